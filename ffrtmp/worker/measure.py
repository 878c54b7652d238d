"""What a worker measures about each job beyond its progress: the quality of the output and the cost of the work.

The runner asks this module which comparison to run after an encode (`quality_pass`) and how the figures read
in a completed job's `metrics` (`cost_metrics`, `quality_metrics`): each number comes with how it was obtained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ffrtmp import defaults
from ffrtmp.units import parse_resolution
from ffrtmp.worker.energy import Energy
from ffrtmp.worker.engines import JobContext
from ffrtmp.worker.quality import (
    FILTER_OF,
    METRICS_OF_MODE,
    QualityError,
    QualityPass,
    measures_inline,
    reference_file,
    video_size,
)
from ffrtmp.worker.usage import Usage


@dataclass(frozen=True)
class Measuring:
    """A worker's means of measuring, found once at start-up."""

    quality_metrics: tuple[str, ...] = ()
    """What its FFmpeg can measure: "psnr", "ssim", "vmaf" (quality.measurable)."""
    watts_per_core: float = defaults.WATTS_PER_CORE
    nvidia_smi: str | None = None
    inline: bool = True
    """Measure inside an FFmpeg encode where that FFmpeg can (`quality.measures_inline`); False: always after."""


def quality_mode(params: dict[str, Any]) -> str:
    """The job's `--quality`; jobs stored before the field existed measure nothing."""
    mode = params.get("quality")
    return mode if mode in METRICS_OF_MODE else "none"


def quality_pass(mode: str, ffmpeg: str | None, measuring: Measuring, context: JobContext) -> QualityPass:
    """The comparison of this attempt's output with its source; QualityError when it cannot be made here."""
    if ffmpeg is None:
        raise QualityError("this worker has no FFmpeg to compare with")
    missing = [FILTER_OF[m] for m in METRICS_OF_MODE[mode] if m not in measuring.quality_metrics]
    if missing:
        raise QualityError(f"this worker's FFmpeg has no {', '.join(missing)} filter")
    reference = reference_file(context.input_path)
    resolution = context.params["resolution"]
    # a generated test source is made at the job's resolution; a given input (a path, a URL, a stored file) is probed
    given = context.params.get("input") or context.params.get("input_file")
    size = video_size(ffmpeg, reference) if given else parse_resolution(resolution)
    return QualityPass(mode=mode, distorted=context.output, distorted_size=resolution, reference=reference,
                       reference_size=size, duration=float(context.params["duration"]),
                       loop_reference=bool(context.spec.get("_loop_input")), threads=max(1, context.cpu_count),
                       fps=int(context.params["fps"]))


MAX_INLINE_PIXELS = 1920 * 1088
"""Above 1080p the comparison runs after the encode: inside it, the source frames wait in the graph for the
encoder's delayed output (its lookahead, tens of frames), tens of MiB at 360p and hundreds at 4K."""


def inline_comparison(engine: str, ffmpeg: str | None, measuring: Measuring,
                      context: JobContext) -> QualityPass | None:
    """The comparison to run inside this attempt's encode, or None: it is measured after, if at all (another
    engine, a stream, quality none, an FFmpeg older than 7.1, or a comparison that cannot be made, which the
    pass after the encode then reports)."""
    mode = quality_mode(context.params)
    if engine != "ffmpeg" or mode == "none" or context.streaming or not measuring.inline \
            or not measures_inline(ffmpeg):
        return None
    try:
        comparison = quality_pass(mode, ffmpeg, measuring, context)
    except QualityError:
        return None
    width, height = parse_resolution(comparison.distorted_size)
    if max(width * height, comparison.reference_size[0] * comparison.reference_size[1]) > MAX_INLINE_PIXELS:
        return None
    return comparison


def cost_metrics(usage: Usage, energy: Energy | None) -> dict[str, Any]:
    figures: dict[str, Any] = {"cpu_seconds": usage.cpu_seconds, "peak_rss_bytes": usage.peak_rss_bytes,
                               "usage_source": usage.how}
    if energy is not None:
        figures.update(energy_joules=energy.joules, energy_source=energy.source, energy_how=energy.how)
    return figures
