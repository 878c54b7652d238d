#!/usr/bin/env python3
"""What measuring quality costs an encode, for `--quality basic` and `vmaf`, measured inside it and after it.

Real attempts on the worker's own runner (the code a worker runs per job), with the bundled FFmpeg (it has
libvmaf and loopback decoders): a generated 720p30 source of 10 s, encoded at the job defaults (libx264,
2500k). Each round runs the encode alone (`--quality none`), then each mode measured inside the encode
(`inline`, what a worker does with FFmpeg 7.1+: the ratio is the extra wall time over the encode alone of the
same round) and after it (`after`, the separate pass older FFmpegs get: the pass's wall time over its own
encode's, taken inside one job, which a loaded machine disturbs less). The targets (issue 18): basic <= 0.25,
vmaf <= 1.0. One JSON line per job, then one summary line per preset, mode and way.

    python scripts/bench/quality.py [--rounds 2] [--how inline,after] [--presets ultrafast,fast]
                                    [--resolution 1280x720] [--fps 30] [--duration 10]
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
from ffrtmp.worker.quality import measurable, measures_inline  # noqa: E402
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
    parser.add_argument("--how", default="inline,after", help="inline: measured inside the encode (the worker's "
                        "default with FFmpeg 7.1+), its ratio is the encode's extra wall time over the same encode "
                        "alone; after: the separate pass, its wall time over the encode's")
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
    hows = [h.strip() for h in args.how.split(",") if h.strip()]
    if "inline" in hows and not measures_inline(ffmpeg):
        raise SystemExit(f"{ffmpeg} cannot measure inside the encode (FFmpeg 7.1+ has -dec): use --how after")
    measuring = {"inline": Measuring(quality_metrics=metrics_found),
                 "after": Measuring(quality_metrics=metrics_found, inline=False)}
    submit = {"resolution": args.resolution, "fps": args.fps, "duration": args.duration, "codec": "h264",
              "bitrate": args.bitrate}
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] or [None]
    ratios: dict[tuple[str | None, str, str], list[float]] = {
        (p, mode, how): [] for p in presets for mode in TARGETS for how in hows}
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-quality-") as root:
        work = Path(root) / "work"
        run_attempt(work, ffmpeg, encoders, Measuring(), "warm", {**submit, "quality": "none"})  # the source
        for round_ in range(args.rounds):
            for preset in presets:
                chosen = {"preset": preset} if preset else {}
                # the encode alone, next to the measured ones: what an inline measurement adds is read against it
                plain = run_attempt(work, ffmpeg, encoders, Measuring(), f"none-{preset}-{round_}",
                                    {**submit, "quality": "none", **chosen})
                alone = plain["wall_seconds"] - plain["prepare_seconds"]
                for mode in TARGETS:
                    for how in hows:
                        m = run_attempt(work, ffmpeg, encoders, measuring[how], f"{mode}-{how}-{preset}-{round_}",
                                        {**submit, "quality": mode, **chosen})
                        encode = m["wall_seconds"] - m["prepare_seconds"]
                        if how == "inline":
                            assert m.get("quality_inline"), m
                            ratio, cpu = encode / alone - 1, m["cpu_seconds"] / max(plain["cpu_seconds"], 1e-3) - 1
                        else:
                            ratio = m["quality_seconds"] / encode
                            cpu = m["quality_cpu_seconds"] / max(m["cpu_seconds"], 1e-3)
                        ratios[(preset, mode, how)].append(ratio)
                        print(json.dumps({"bench": "quality_job", "mode": mode, "how": how,
                                          "preset": preset or "worker default", "round": round_,
                                          "encode_alone_seconds": round(alone, 3),
                                          "encode_seconds": round(encode, 3),
                                          "quality_seconds": m.get("quality_seconds"),
                                          "ratio": round(ratio, 3), "cpu_ratio": round(cpu, 3),
                                          "psnr_db": m.get("psnr_db"), "ssim": m.get("ssim"),
                                          "vmaf": m.get("vmaf")}), flush=True)
    default = software_preset(os.cpu_count() or 1)
    for (preset, mode, how), values in ratios.items():
        median = statistics.median(values)
        print(json.dumps({"bench": "quality", "mode": mode, "how": how,
                          "source": f"{args.resolution}@{args.fps} {args.duration:g}s, libx264 {args.bitrate} "
                          f"-preset {preset or default}", "ffmpeg": source, "jobs": len(values),
                          "overhead_ratio_median": round(median, 3), "overhead_ratio_max": round(max(values), 3),
                          "target": TARGETS[mode], "met": median <= TARGETS[mode],
                          "users_default": how == hows[0]}), flush=True)

if __name__ == "__main__":
    main()
