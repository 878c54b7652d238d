"""Finding the external programs a worker runs: FFmpeg (SPEC §1 order) and GStreamer."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache

from ffrtmp.worker.childenv import child_environment


@lru_cache(maxsize=8)
def find_ffmpeg(explicit: str | None = None) -> str | None:
    """`--ffmpeg`/`FFRTMP_FFMPEG`, then `ffmpeg` on PATH, then the imageio-ffmpeg binary (extra `ffmpeg`)."""
    for candidate in (explicit, os.environ.get("FFRTMP_FFMPEG")):
        if candidate:
            return shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        path: str = imageio_ffmpeg.get_ffmpeg_exe()
        return path
    except Exception:
        return None


def find_ffprobe(ffmpeg: str | None) -> str | None:
    if ffmpeg:
        sibling = os.path.join(os.path.dirname(ffmpeg), "ffprobe")
        if os.access(sibling, os.X_OK):
            return sibling
    return shutil.which("ffprobe")


@lru_cache(maxsize=1)
def find_gstreamer() -> str | None:
    """`gst-launch-1.0` on PATH, or None: GStreamer is optional."""
    return shutil.which("gst-launch-1.0")


def find_gst_inspect(gst_launch: str | None) -> str | None:
    """`gst-inspect-1.0` beside `gst-launch-1.0` (they ship together), else on PATH."""
    if gst_launch:
        sibling = os.path.join(os.path.dirname(gst_launch), "gst-inspect-1.0")
        if os.access(sibling, os.X_OK):
            return sibling
    return shutil.which("gst-inspect-1.0")


def run_quiet(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a short probe command; never through a shell."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          errors="replace", check=False, env=child_environment())
