"""Reading FFmpeg's `-progress` output: key=value lines, one block per update, ending in `progress=`."""

from __future__ import annotations

from typing import Any


def _number(text: str) -> float | None:
    text = text.strip().rstrip("x").strip()
    if not text or text == "N/A":
        return None
    try:
        return float(text)
    except ValueError:
        return None


class FfmpegProgress:
    """Feed it stdout lines; `snapshot` holds the latest complete block in our metric names."""

    def __init__(self, duration: float | None) -> None:
        self.duration = duration
        self._block: dict[str, str] = {}
        self.snapshot: dict[str, Any] = {}
        self.ended = False

    def feed(self, line: str) -> bool:
        """True when the line completed a block (and `snapshot` changed)."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return False
        if key != "progress":
            self._block[key] = value
            return False
        self.ended = value.strip() == "end"
        self.snapshot = self._convert(self._block)
        self._block = {}
        return True

    def _convert(self, block: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        frames = _number(block.get("frame", ""))
        if frames is not None:
            out["frames"] = int(frames)
        for key in ("fps", "speed"):
            value = _number(block.get(key, ""))
            if value is not None:
                out[key] = value
        micros = _number(block.get("out_time_us", "") or block.get("out_time_ms", ""))
        if micros is not None and micros >= 0:
            out["out_time"] = micros / 1_000_000
        bitrate = block.get("bitrate", "").replace("kbits/s", "")
        value = _number(bitrate)
        if value is not None:
            out["bitrate"] = value
        size = _number(block.get("total_size", ""))
        if size is not None:
            out["size"] = int(size)
        if self.duration and "out_time" in out:
            out["progress"] = 1.0 if self.ended else min(1.0, out["out_time"] / self.duration)
        return out
