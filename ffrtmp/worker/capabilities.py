"""What a worker can do: its engines and its validated encoders, found once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psutil

from ffrtmp.worker import encoders as encoder_probe
from ffrtmp.worker.tools import find_ffmpeg, find_gstreamer

KNOWN_ENGINES = ("ffmpeg", "gstreamer", "null")


@dataclass
class Capabilities:
    engines: list[str]
    ffmpeg: str | None
    gstreamer: str | None
    encoders: list[encoder_probe.Encoder] = field(default_factory=list)
    cpu_count: int = 1
    missing: dict[str, str] = field(default_factory=dict)
    """Engines asked for but unavailable, with the reason."""

    def encoder_map(self) -> dict[str, dict[str, Any]]:
        return {e.name: e.to_dict() for e in self.encoders}


def detect(wanted: list[str] | None = None, ffmpeg: str | None = None, *, validate: bool = True) -> Capabilities:
    """Engines present on this machine (restricted to `wanted` when given) and their encoders."""
    ffmpeg_path = find_ffmpeg(ffmpeg)
    gst_path = find_gstreamer()
    present = {"ffmpeg": ffmpeg_path is not None, "gstreamer": False, "null": True}
    missing = {}
    if ffmpeg_path is None:
        missing["ffmpeg"] = "ffmpeg not found (install it, pass --ffmpeg, or pip install 'ffrtmp[ffmpeg]')"
    if gst_path is None:
        missing["gstreamer"] = "gst-launch-1.0 not found"
    else:
        missing["gstreamer"] = "the GStreamer engine is not part of this version yet"
    chosen = [e for e in KNOWN_ENGINES if present[e] and (wanted is None or e in wanted)]
    found = encoder_probe.detect(ffmpeg_path) if validate and "ffmpeg" in chosen else []
    return Capabilities(engines=chosen, ffmpeg=ffmpeg_path, gstreamer=gst_path, encoders=found,
                        cpu_count=psutil.cpu_count() or 1,
                        missing={k: v for k, v in missing.items() if wanted is None or k in wanted})
