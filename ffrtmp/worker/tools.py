"""Finding the external programs a worker runs: FFmpeg (in the README's search order) and GStreamer."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from ffrtmp.worker.childenv import child_environment

FFMPEG_HINT = ("install FFmpeg (e.g. apt install ffmpeg, brew install ffmpeg), pass --ffmpeg PATH, "
               "or reinstall ffrtmp with its dependencies (pip install imageio-ffmpeg brings a bundled one)")
"""What to do when no FFmpeg is found: each of these works on its own."""


@dataclass(frozen=True)
class FoundFFmpeg:
    path: str | None
    source: str
    """How it was found: "--ffmpeg/FFRTMP_FFMPEG", "PATH" or "bundled (imageio-ffmpeg)"; why not when path is None."""

    @property
    def bundled(self) -> bool:
        return self.source == BUNDLED


BUNDLED = "bundled (imageio-ffmpeg)"


@lru_cache(maxsize=8)
def locate_ffmpeg(explicit: str | None = None) -> FoundFFmpeg:
    """The search order: `--ffmpeg`/`FFRTMP_FFMPEG` (no fallback: what is named is meant), `ffmpeg` on PATH, bundled."""
    for candidate in (explicit, os.environ.get("FFRTMP_FFMPEG")):
        if candidate:
            found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
            if found:
                return FoundFFmpeg(found, "--ffmpeg/FFRTMP_FFMPEG")
            return FoundFFmpeg(None, f"--ffmpeg/FFRTMP_FFMPEG {candidate!r} is not an executable: pass the path of "
                                     "an ffmpeg binary, or leave it unset to use PATH or the bundled one")
    found = shutil.which("ffmpeg")
    if found:
        return FoundFFmpeg(found, "PATH")
    try:
        import imageio_ffmpeg

        path: str = imageio_ffmpeg.get_ffmpeg_exe()
        return FoundFFmpeg(path, BUNDLED)
    except Exception as exc:  # imageio-ffmpeg missing, or its binary absent for this platform
        return FoundFFmpeg(None, f"ffmpeg not on PATH and no bundled one ({exc}): {FFMPEG_HINT}")


def find_ffmpeg(explicit: str | None = None) -> str | None:
    """The path of the FFmpeg to use (see `locate_ffmpeg`), or None."""
    return locate_ffmpeg(explicit).path


@lru_cache(maxsize=8)
def ffmpeg_version(ffmpeg: str) -> str | None:
    """The version word of `ffmpeg -version` (e.g. "7.1.1" or "n9.0.2-17-g2a571b6068-20260930"), None if it fails."""
    try:
        done = run_quiet([ffmpeg, "-hide_banner", "-version"], timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    if done.returncode != 0 or len(words) < 3 or words[1] != "version":
        return None
    return words[2]


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
