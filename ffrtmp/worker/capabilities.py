"""What a worker can do: its engines and its validated encoders, found once at start-up.

FFmpeg is offered when it is found, GStreamer when `gst-launch-1.0` runs and at least one H.264 element
passed its test pipeline (H.264 is what every GStreamer job and every RTMP stream needs). The encoder map
holds both engines' encoders, each entry tagged with its `engine`; GStreamer entries are keyed by element
name (x264enc, nvh264enc), which never collides with an FFmpeg encoder name (libx264, h264_nvenc).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

import psutil

from ffrtmp.worker import encoders as encoder_probe
from ffrtmp.worker import gst_encoders
from ffrtmp.worker.quality import measurable
from ffrtmp.worker.tools import find_gst_inspect, find_gstreamer, locate_ffmpeg, run_quiet

KNOWN_ENGINES = ("ffmpeg", "gstreamer", "null")
GSTREAMER_NEEDS_CODEC = "h264"


@dataclass
class Capabilities:
    engines: list[str]
    ffmpeg: str | None
    gstreamer: str | None
    """The gst-launch-1.0 path, or None."""
    encoders: list[encoder_probe.Encoder] = field(default_factory=list)
    cpu_count: int = 1
    missing: dict[str, str] = field(default_factory=dict)
    """Engines asked for but unavailable, with the reason."""
    ffmpeg_source: str = ""
    """How `ffmpeg` was found: "--ffmpeg/FFRTMP_FFMPEG", "PATH" or "bundled (imageio-ffmpeg)"."""
    quality: tuple[str, ...] = ()
    """The quality metrics its FFmpeg can measure ("psnr", "ssim", "vmaf"): HELLO tells the master."""

    def encoder_map(self) -> dict[str, dict[str, Any]]:
        """The encoders of the engines this worker offers (what the master places by and jobs use)."""
        return {e.name: e.to_dict() for e in self.encoders if e.engine in self.engines}


def gstreamer_problem(gst_launch: str | None) -> str | None:
    """None when gst-launch-1.0 runs, else why not."""
    if gst_launch is None:
        return "gst-launch-1.0 not found (install gstreamer1.0-tools and the plugins)"
    try:
        done = run_quiet([gst_launch, "--version"], timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"gst-launch-1.0 does not run: {exc}"
    return None if done.returncode == 0 else f"gst-launch-1.0 --version exited with {done.returncode}"


def no_h264_element(elements: list[encoder_probe.Encoder]) -> str:
    reasons = [f"{e.name}: {e.reason}" for e in elements if e.codec == GSTREAMER_NEEDS_CODEC and e.reason]
    return "no usable H.264 element" + (f" ({'; '.join(reasons[-3:])})" if reasons else
                                        " (install gstreamer1.0-plugins-ugly for x264enc)")


def detect_gstreamer(gst_launch: str | None, validate: bool) -> tuple[list[encoder_probe.Encoder], str | None]:
    """GStreamer's elements, and None when the engine can be offered, else why not."""
    problem = gstreamer_problem(gst_launch)
    if problem:
        return [], problem
    if not validate:
        return [], "encoder validation was skipped"
    elements = gst_encoders.detect(find_gst_inspect(gst_launch), gst_launch)
    if not any(e.available and e.codec == GSTREAMER_NEEDS_CODEC for e in elements):
        return elements, no_h264_element(elements)
    return elements, None


def detect(wanted: list[str] | None = None, ffmpeg: str | None = None, *, validate: bool = True) -> Capabilities:
    """Engines present on this machine (restricted to `wanted` when given) and their validated encoders."""
    def asked(engine: str) -> bool:
        return wanted is None or engine in wanted

    located = locate_ffmpeg(ffmpeg)
    ffmpeg_path = located.path
    missing: dict[str, str] = {}
    if ffmpeg_path is None:
        missing["ffmpeg"] = located.source
    found = encoder_probe.detect(ffmpeg_path) if validate and asked("ffmpeg") and ffmpeg_path else []
    gst_launch = find_gstreamer()
    elements, gst_problem = detect_gstreamer(gst_launch, validate) if asked("gstreamer") else ([], "not asked for")
    if gst_problem:
        missing["gstreamer"] = gst_problem
    present = {"ffmpeg": ffmpeg_path is not None, "gstreamer": gst_problem is None, "null": True}
    chosen = [e for e in KNOWN_ENGINES if present[e] and asked(e)]
    return Capabilities(engines=chosen, ffmpeg=ffmpeg_path, gstreamer=gst_launch if gst_problem is None else None,
                        encoders=found + elements, cpu_count=psutil.cpu_count() or 1,
                        missing={k: v for k, v in missing.items() if asked(k)},
                        ffmpeg_source=located.source if ffmpeg_path else "",
                        quality=measurable(ffmpeg_path, validate) if asked("ffmpeg") else ())
