"""Reading an encoder's progress into one snapshot shape: `frames`, `out_time`, `progress`, `fps`, `speed`.

FFmpeg writes key=value blocks with `-progress pipe:1`, each ending in `progress=`. GStreamer's
`progressreport` element writes one line a second. The master's stall detection watches `frames` and
`out_time` advance, so both parsers fill those keys.
"""

from __future__ import annotations

import re
from typing import Any, Protocol


class ProgressParser(Protocol):
    snapshot: dict[str, Any]
    consumes_all_lines: bool
    """True when every stdout line belongs to the progress protocol (so none is worth logging)."""

    def feed(self, line: str) -> bool:
        """True when `snapshot` changed."""
        ...


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

    consumes_all_lines = True

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


# `progressreport0 (00:00:03): 2 / 4 seconds (50.0 %)`, or without the total when the length is unknown.
_REPORT = re.compile(r"^\S+ \((?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)\): (?P<position>-?\d+)(?: / -?\d+)? seconds\b")


class GstProgress:
    """Feed it gst-launch-1.0's stdout lines; `progressreport` lines (in seconds) update `snapshot`.

    The report gives whole seconds of stream position and of elapsed time. The pipeline fixes the frame
    rate, so frames are the position times the fps; `fps` and `speed` are averages since the start.
    """

    consumes_all_lines = False

    def __init__(self, duration: float | None, fps: float | None) -> None:
        self.duration = duration
        self.fps = fps
        self.snapshot: dict[str, Any] = {}

    def feed(self, line: str) -> bool:
        match = _REPORT.match(line.strip())
        if not match:
            return False
        position = max(0, int(match.group("position")))
        elapsed = int(match.group("h")) * 3600 + int(match.group("m")) * 60 + int(match.group("s"))
        out: dict[str, Any] = {"out_time": float(position)}
        if self.fps:
            out["frames"] = int(position * self.fps)
        if elapsed > 0:
            out["speed"] = round(position / elapsed, 3)
            if "frames" in out:
                out["fps"] = round(out["frames"] / elapsed, 2)
        if self.duration:
            out["progress"] = min(1.0, position / self.duration)
        self.snapshot = out
        return True
