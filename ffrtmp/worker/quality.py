"""Measuring an encode against its source: one FFmpeg pass after the encode (`--quality basic|vmaf`).

`basic` runs FFmpeg's `psnr` and `ssim` filters, `vmaf` adds `libvmaf`, chained in one filter graph over one
read of both files (each filter passes its first input through). The numbers are FFmpeg's own summary lines
(`PSNR ... average:`, `SSIM ... All:`, `VMAF score:`), read from its log, never recomputed here. The
distorted video is scaled to the reference's size when they differ (VMAF's models assume equal sizes);
both start at time 0 so the filters pair the same frames.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ffrtmp.units import parse_resolution
from ffrtmp.worker.inputs import PROBE_TIMEOUT
from ffrtmp.worker.progress import FfmpegProgress
from ffrtmp.worker.sources import ffmpeg_input
from ffrtmp.worker.tools import run_quiet

FILTER_OF = {"psnr": "psnr", "ssim": "ssim", "vmaf": "libvmaf"}
"""Each metric and the FFmpeg filter that measures it."""
METRICS_OF_MODE = {"none": (), "basic": ("psnr", "ssim"), "vmaf": ("psnr", "ssim", "vmaf")}
CHECK_TIMEOUT = 20.0

_FILTER_LINE = re.compile(r"^\s*[A-Z.|]{2,3}\s+(\w+)\s+\S+->\S+", re.MULTILINE)
_VIDEO_SIZE = re.compile(r"^\s*Stream #0:\d+\S*: Video: .*?\b(\d{2,5})x(\d{2,5})\b", re.MULTILINE)
_ROTATION = re.compile(r"(?i)display ?matrix: rotation of (-?[0-9.]+) degrees")
_SCORES = {"psnr_db": re.compile(r"\bPSNR y:.*\baverage:(\S+)"),
           "ssim": re.compile(r"\bSSIM Y:.*\bAll:(\S+)"),
           "vmaf": re.compile(r"\bVMAF score: (\S+)")}
_SCORE_OF_METRIC = {"psnr": "psnr_db", "ssim": "ssim", "vmaf": "vmaf"}


class QualityError(Exception):
    """The pass could not run or said nothing usable; the job still completes, without the numbers."""


@lru_cache(maxsize=8)
def measurable(ffmpeg: str | None, validate: bool = True) -> tuple[str, ...]:
    """The metrics this FFmpeg can measure ("psnr", "ssim", "vmaf"): its filter is listed by `ffmpeg -filters`
    and, for libvmaf (which needs its model at run time), a two-frame test comparison passes."""
    if ffmpeg is None:
        return ()
    try:
        done = run_quiet([ffmpeg, "-hide_banner", "-filters"], timeout=CHECK_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    listed = set(_FILTER_LINE.findall(done.stdout))
    found = [metric for metric, name in FILTER_OF.items() if name in listed]
    if "vmaf" in found and validate and not _vmaf_runs(ffmpeg):
        found.remove("vmaf")
    return tuple(found)


def _vmaf_runs(ffmpeg: str) -> bool:
    source = "testsrc2=size=64x64:rate=2:duration=1"
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", source, "-f", "lavfi",
            "-i", source, "-lavfi", "[0:v][1:v]libvmaf", "-f", "null", "-"]
    try:
        return run_quiet(argv, timeout=CHECK_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=8)
def measures_inline(ffmpeg: str | None) -> bool:
    """Whether this FFmpeg can measure inside the encode: a loopback decoder (`-dec`, FFmpeg 7.1 and newer)
    feeding a filter graph beside the output, tried on two frames (an older FFmpeg refuses the option)."""
    if ffmpeg is None:
        return False
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
            "testsrc2=size=64x64:rate=2:duration=1", "-map", "0:v", "-c:v", "mpeg4", "-f", "null", "-",
            "-dec", "0:0", "-filter_complex", "[dec:0][0:v]psnr[q]", "-map", "[q]", "-f", "null", "-"]
    try:
        return run_quiet(argv, timeout=CHECK_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def modes(metrics: Iterable[str]) -> list[str]:
    """The `--quality` modes a worker measuring `metrics` can serve."""
    have = set(metrics)
    return [mode for mode, needed in METRICS_OF_MODE.items() if set(needed) <= have]


def video_size(ffmpeg: str, source: str) -> tuple[int, int]:
    """The first video stream's WIDTHxHEIGHT, read from `ffmpeg -i` (the bundled FFmpeg has no ffprobe)."""
    try:
        done = run_quiet([ffmpeg, "-hide_banner", "-nostdin", *ffmpeg_input(source)], timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QualityError(f"probing the source's size failed: {exc}") from None
    match = _VIDEO_SIZE.search(done.stderr)
    if match is None:
        raise QualityError("the source's video size could not be read")
    width, height = int(match.group(1)), int(match.group(2))
    # FFmpeg turns a stream stored sideways (phones) upright as it decodes: its frames are then HEIGHTxWIDTH
    block = done.stderr[match.end():].split("Stream #", 1)[0]
    rotation = _ROTATION.search(block)
    if rotation is not None and round(abs(float(rotation.group(1)))) % 180 == 90:
        return height, width
    return width, height


@dataclass(frozen=True)
class QualityPass:
    """One comparison: the distorted (the encode's output) against the reference (its source)."""

    mode: str
    distorted: str
    distorted_size: str
    """WIDTHxHEIGHT the encode wrote (the job's resolution)."""
    reference: str
    reference_size: tuple[int, int]
    duration: float
    """Seconds of the reference the encode read (`-t`)."""
    loop_reference: bool = False
    """The encode looped a short source (`-stream_loop -1`); the reference is read the same way."""
    threads: int = 1
    fps: int | None = None
    """The rate the encode wrote: the distorted frames are put back on its exact grid first. A container that
    keeps milliseconds (MKV, WebM, FLV) stores 1/30 s as 0.033 s, and the filters then paired about half the
    frames with the source's previous one (3–5 dB too low); a loopback decoder's frames are on the grid."""

    def graph(self, distorted_pad: str = "[0:v]", reference_pad: str = "[1:v]", reference_trim: str = "",
              last_label: str = "") -> str:
        metrics = METRICS_OF_MODE[self.mode]
        if not metrics:
            raise QualityError(f"quality {self.mode!r} measures nothing")
        width, height = self.reference_size
        distorted = f"{distorted_pad}setpts=PTS-STARTPTS" + (f",fps={self.fps}" if self.fps else "")
        if parse_resolution(self.distorted_size) != self.reference_size:
            distorted += f",scale={width}:{height}:flags=bicubic"
        refs = "".join(f"[r{i}]" for i in range(len(metrics)))
        chain = [f"{distorted}[d0]", f"{reference_pad}{reference_trim}setpts=PTS-STARTPTS,split={len(metrics)}{refs}"]
        for i, metric in enumerate(metrics):
            options = f"=n_threads={self.threads}" if metric == "vmaf" else ""
            last = i == len(metrics) - 1
            chain.append(f"[d{i}][r{i}]{FILTER_OF[metric]}{options}" + (last_label if last else f"[d{i + 1}]"))
        return ";".join(chain)

    def inline_args(self) -> list[str]:
        """What an FFmpeg encode appends to measure as it encodes (`measures_inline`): its output's video
        stream (output 0, stream 0) decoded again by a loopback decoder, compared with the input's own decoded
        frames ([0:v], cut to the seconds the encode writes), into a null output. The source is read and
        decoded once, for both; the numbers are the same filters' over the same frames as the separate pass."""
        graph = self.graph("[dec:0]", "[0:v]", f"trim=duration={self.duration:g},", "[quality]")
        return ["-dec", "0:0", "-filter_complex", graph, "-map", "[quality]", "-f", "null", "-"]

    def argv(self, ffmpeg: str) -> list[str]:
        reference = [*(["-stream_loop", "-1"] if self.loop_reference else []), "-t", f"{self.duration:g}",
                     *ffmpeg_input(self.reference)]
        return [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", "-loglevel", "info",
                *ffmpeg_input(self.distorted), *reference, "-lavfi", self.graph(), "-an", "-f", "null", "-"]

    def scores(self, lines: Iterable[str]) -> dict[str, float]:
        """The numbers FFmpeg printed for this pass; QualityError when one it should have printed is missing."""
        found: dict[str, float] = {}
        for line in lines:
            for key, pattern in _SCORES.items():
                match = pattern.search(line)
                if match:
                    found[key] = float(match.group(1))
        wanted = [_SCORE_OF_METRIC[m] for m in METRICS_OF_MODE[self.mode]]
        missing = [key for key in wanted if key not in found]
        if missing:
            raise QualityError(f"FFmpeg printed no {', '.join(missing)} for this comparison")
        # PSNR of identical frames is infinite ("inf"): JSON has no such number, so it is left out and said so
        return {key: round(value, 6) for key, value in found.items() if key in wanted and math.isfinite(value)}


class ComparisonProgress:
    """The pass's progress as keys beside the encode's last figures (which stay as they were): the master's
    stall detection sees `quality_frames` advance, so a long comparison is not taken for a stalled attempt."""

    consumes_all_lines = True

    def __init__(self, encode: dict[str, Any], duration: float) -> None:
        self.encode = {**encode, "phase": "quality"}
        self.inner = FfmpegProgress(duration)
        self.snapshot: dict[str, Any] = dict(self.encode)

    def feed(self, line: str) -> bool:
        if not self.inner.feed(line):
            return False
        figures = self.inner.snapshot
        self.snapshot = {**self.encode, "quality_frames": figures.get("frames"),
                         "quality_progress": figures.get("progress")}
        return True


def reference_file(source: str | None) -> str:
    """The source as the pass reads it: a local file only (a URL may be live, and reading it twice costs the
    network as much as the encode did)."""
    if source is None:
        raise QualityError("the engine generated its own source (GStreamer test source): nothing to compare with")
    if "://" in source:
        raise QualityError("the input is a URL: quality is measured against local sources only")
    return source

