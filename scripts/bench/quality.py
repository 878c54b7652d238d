#!/usr/bin/env python3
"""The quality pass's overhead: its wall time as a ratio of the encode's, for `--quality basic` and `vmaf`.

Real attempts on the worker's own runner (the code a worker runs per job), with the bundled FFmpeg (it has
libvmaf): a generated 720p30 source of 10 s, encoded at the job defaults (libx264, 2500k), then measured.
basic and vmaf jobs alternate, so both see the same machine; the ratio is taken inside each job (pass wall
time / encode wall time), which a loaded machine disturbs far less than either time alone. The targets
(issue 18): basic <= 0.25, vmaf <= 1.0. One JSON line per job, then one summary line per mode.

    python scripts/bench/quality.py [--rounds 2] [--resolution 1280x720] [--fps 30] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.jobspec import validate_submission  # noqa: E402
from ffrtmp.worker import encoders as encoder_probe  # noqa: E402
from ffrtmp.worker.engines.ffmpeg import software_preset  # noqa: E402
from ffrtmp.worker.measure import Measuring  # noqa: E402
from ffrtmp.worker.quality import measurable  # noqa: E402
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths  # noqa: E402
from ffrtmp.worker.tools import BUNDLED, locate_ffmpeg  # noqa: E402

TARGETS = {"basic": 0.25, "vmaf": 1.0}


def run_attempt(work: Path, ffmpeg: str, encoders: dict[str, Any], measuring: Measuring, job: str,
                submit: dict[str, Any]) -> dict[str, Any]:
    params = validate_submission({"scenario": "bench", **submit}).params
    spec = {"scenario": "bench", "engine": "ffmpeg", "queue": "default", "priority": "medium", "params": params,
            "labels": {}, "timeout": None, "tenant": "bench"}
    finished: list[dict[str, Any]] = []

    def emit(event: Event) -> None:
        if event.kind == "finished":
            finished.append(event.data)

    runner = AttemptRunner(Attempt(job=job, attempt=1, spec=spec, received_at=0.0), WorkerPaths(work), ffmpeg,
                           encoders, emit, cpu_count=os.cpu_count() or 1, measuring=measuring)
    runner.run()
    [result] = finished
    if result["status"] != "completed" or "quality_error" in result.get("metrics", {}):
        raise SystemExit(f"job {job} did not measure: {json.dumps(result)[:1000]}")
    metrics: dict[str, Any] = result["metrics"]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="basic + vmaf jobs per round")
    parser.add_argument("--resolution", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--bitrate", default="2500k")
    parser.add_argument("--presets", default="", help="comma list of x264 presets to encode with (default: the "
                        "worker's own choice for this machine's cores; a ≥8-core worker picks fast)")
    args = parser.parse_args()
    found = locate_ffmpeg(None)
    try:
        import imageio_ffmpeg

        ffmpeg, source = imageio_ffmpeg.get_ffmpeg_exe(), BUNDLED
    except Exception:  # no bundled FFmpeg: the one the worker would find, if it has libvmaf
        assert found.path is not None, found.source
        ffmpeg, source = found.path, found.source
    metrics_found = measurable(ffmpeg)
    if "vmaf" not in metrics_found:
        raise SystemExit(f"{ffmpeg} has no working libvmaf: install imageio-ffmpeg")
    encoders = {e.name: e.to_dict() for e in encoder_probe.detect(ffmpeg) if e.name == "libx264"}
    measuring = Measuring(quality_metrics=metrics_found)
    submit = {"resolution": args.resolution, "fps": args.fps, "duration": args.duration, "codec": "h264",
              "bitrate": args.bitrate}
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] or [None]
    ratios: dict[tuple[str | None, str], list[float]] = {(p, mode): [] for p in presets for mode in TARGETS}
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-quality-") as root:
        work = Path(root) / "work"
        run_attempt(work, ffmpeg, encoders, Measuring(), "warm", {**submit, "quality": "none"})  # the source
        for round_ in range(args.rounds):
            for preset, mode in ratios:
                given = {**submit, "quality": mode, **({"preset": preset} if preset else {})}
                m = run_attempt(work, ffmpeg, encoders, measuring, f"{mode}-{preset}-{round_}", given)
                encode = m["wall_seconds"] - m["prepare_seconds"]
                ratio = m["quality_seconds"] / encode
                ratios[(preset, mode)].append(ratio)
                print(json.dumps({"bench": "quality_job", "mode": mode, "preset": preset or "worker default",
                                  "round": round_,
                                  "encode_seconds": round(encode, 3), "quality_seconds": m["quality_seconds"],
                                  "ratio": round(ratio, 3), "encode_cpu_seconds": m["cpu_seconds"],
                                  "quality_cpu_seconds": m.get("quality_cpu_seconds"),
                                  "cpu_ratio": round(m["quality_cpu_seconds"] / max(m["cpu_seconds"], 1e-3), 3),
                                  "psnr_db": m.get("psnr_db"), "ssim": m.get("ssim"), "vmaf": m.get("vmaf")}),
                      flush=True)
    default = software_preset(os.cpu_count() or 1)
    for (preset, mode), values in ratios.items():
        median = statistics.median(values)
        print(json.dumps({"bench": "quality", "mode": mode, "source": f"{args.resolution}@{args.fps} "
                          f"{args.duration:g}s, libx264 {args.bitrate} -preset {preset or default}",
                          "ffmpeg": source, "jobs": len(values),
                          "overhead_ratio_median": round(median, 3), "overhead_ratio_max": round(max(values), 3),
                          "target": TARGETS[mode], "met": median <= TARGETS[mode]}), flush=True)


if __name__ == "__main__":
    main()
