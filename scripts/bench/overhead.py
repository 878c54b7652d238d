#!/usr/bin/env python3
"""Overhead on real work: the same short FFmpeg transcodes through ffrtmp and through `xargs -P 2`.

N identical transcodes (default 40; 640x360, 3 s, 30 fps, libx264 veryfast at 1000k, from one input
generated beforehand and not timed) through a real master and 2 default workers × 1 slot (`ffrtmp worker
--slots 1`: every engine found, as users run them), from `submit_many` to the last completion; then the very
argv the workers ran (each job's log starts with `$ ARGV`), outputs moved to a scratch dir, run with
`xargs -P 2`. Rounds alternate (ffrtmp, xargs, ffrtmp, xargs, …) so that neither side always gets the warmer
machine; the ratio is the sum of ffrtmp's wall times over the sum of xargs'. The spread is the 95 %
interval of the mean per-round ratio (t distribution over the rounds): the gap to 1.0 is only a finding
where it is wider than that. Beside wall time, CPU time: the master's and workers' own (orchestration) and
their FFmpegs', against what xargs and its FFmpegs used (other load on the machine moves it far less).

ffrtmp runs FFmpeg under `nice -n 10` (by design, so the master and workers stay responsive). On a machine
other people load too, that alone slows ffrtmp's FFmpeg against an un-niced one, so xargs runs the argv
under the same `nice -n 10` by default; `--xargs-nice 0` runs it as logged, without nice. And as the workers
start each FFmpeg in a session of its own, so does xargs (`setsid`; `--xargs-same-session` leaves it out):
with the kernel's autogroup scheduling, sessions share the CPU first, so on a loaded machine FFmpegs that
share one session get less of it.

    python scripts/bench/overhead.py [--transcodes 40] [--rounds 3] [--prefetch N] [--xargs-nice 10]

`--prefetch` is passed to the workers (default: theirs, 1); `--prefetch 0` measures workers without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import resource
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from benchlib import emit

from ffrtmp.local import LocalCluster
from ffrtmp.worker.outputs import PARTIAL
from ffrtmp.worker.runner import NICE

WORKERS = ["real-1", "real-2"]
SIZE, FPS, SECONDS = "640x360", 30, 3


def make_input(ffmpeg: str, path: Path) -> None:
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={SIZE}:rate={FPS}", "-vf", "noise=alls=10:allf=u,format=yuv420p",
                    "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", str(path)],
                   check=True)


def job_spec(source: Path) -> dict[str, object]:
    # quality none: the comparison is of the same FFmpeg work. A file job measures PSNR/SSIM by default, inside
    # the encode (FFmpeg 7.1+: the logged argv then ends in a null output the xargs side would have to share)
    # or in a second process after it; what that costs is scripts/bench/quality.py's to say, not this one's.
    return {"scenario": "bench-real", "engine": "ffmpeg", "input": str(source), "resolution": SIZE, "fps": FPS,
            "duration": SECONDS, "codec": "h264", "preset": "veryfast", "bitrate": "1000k", "quality": "none"}


def through_ffrtmp(cluster: LocalCluster, source: Path, count: int) -> tuple[float, list[str]]:
    """Wall seconds from submit to the last completion, and the job ids.

    The end is learnt with `Client.wait` on each job in turn (the master says when a job ends; nothing is
    polled), so the benchmark's own requests cost the master next to nothing, as xargs pays nothing for them.
    """
    with cluster.client(timeout=60) as client:
        started = time.perf_counter()
        ids = client.submit_many([job_spec(source)] * count)
        ended = [client.wait(job_id, timeout=600) for job_id in ids]
        wall = time.perf_counter() - started
    failed = [job for job in ended if job["status"] != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} transcodes did not complete: {failed[0].get('error')}")
    return wall, ids


def slot_idle_ms(cluster: LocalCluster, ids: list[str]) -> float:
    """Mean time a worker's slot sat idle between one job's recorded end and its next job's start (what
    prefetch removes: the round trip to the master). Negative: the next started before the master recorded
    the last one's end."""
    with cluster.client() as client:
        jobs = [client.get(job_id) for job_id in ids]
    gaps: list[float] = []
    for node in {job["node"] for job in jobs}:
        runs = sorted((dt.datetime.fromisoformat(j["started_at"]).timestamp(),
                       dt.datetime.fromisoformat(j["finished_at"]).timestamp()) for j in jobs if j["node"] == node)
        gaps += [after[0] - before[1] for before, after in zip(runs, runs[1:], strict=False)]
    return 1000 * sum(gaps) / len(gaps) if gaps else 0.0


def logged_argv(cluster: LocalCluster, ids: list[str], out_dir: Path) -> list[list[str]]:
    """The argv each job ran (its log's `$ …` line), with the output moved to `out_dir`."""
    commands = []
    with cluster.client() as client:
        for job_id in ids:
            job = client.get(job_id)
            line = next(item["line"] for item in client.logs(job_id)["lines"] if item["line"].startswith("$ "))
            argv = line[2:].split(" ")
            # the attempt's partial file beside the output, renamed once accepted; the log says
            # file:WORK_DIR/…, not the worker's path
            written = Path(argv[-1].removeprefix("file:"))
            if " ".join(argv) != line[2:] or written.parent.name != Path(job["output"]).parent.name \
                    or not PARTIAL.search(written.name):
                raise RuntimeError(f"cannot take the argv back from {line!r}")
            commands.append([*argv[:-1], "file:" + str(out_dir / Path(argv[-1]).name)])
    return commands


T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18,
       15: 2.13, 20: 2.09, 30: 2.04}
"""Two-sided 95 % t quantiles by degrees of freedom (rounds - 1); between two entries the smaller df's."""


def interval95(ratios: list[float]) -> float:
    """Half-width of the 95 % interval of the mean of `ratios` (0 with fewer than 2)."""
    if len(ratios) < 2:
        return 0.0
    df = len(ratios) - 1
    t = T95[max(k for k in T95 if k <= df)] if df < 30 else 1.96
    return t * statistics.stdev(ratios) / math.sqrt(len(ratios))


def cluster_cpu(cluster: LocalCluster) -> tuple[float, float]:
    """CPU seconds so far: (the master's and workers' own, the FFmpeg processes the workers ran and reaped)."""
    own = children = 0.0
    for proc in [cluster.master, *cluster.workers.values()]:
        if proc is not None:
            times = psutil.Process(proc.pid).cpu_times()
            own += times.user + times.system
            children += times.children_user + times.children_system
    return own, children


def reaped_children_cpu() -> float:
    """CPU seconds of this process's children (and theirs) that have ended: xargs and its FFmpegs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def through_xargs(commands: list[list[str]], scratch: Path, nice: int, own_session: bool = True) -> float:
    listing = scratch / "commands.txt"
    # The worker starts each FFmpeg in a session of its own (start_new_session); where the kernel groups CPU time
    # by session (autogroup), that gives each one a share as large as a whole login's, so xargs' FFmpegs get one
    # each too, or on a loaded machine ffrtmp would win by scheduling alone.
    prefix = (["setsid", "-w"] if own_session else []) + (["nice", "-n", str(nice)] if nice else [])
    listing.write_text("".join(shlex.join([*prefix, *argv]) + "\n" for argv in commands))
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-L", "1", "-a", str(listing), "env"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def autogroup() -> bool | None:
    """Whether the kernel shares CPU between sessions first (sched_autogroup), None where it cannot be read."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcodes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=None, help="the workers' --prefetch (default: theirs)")
    parser.add_argument("--xargs-same-session", action="store_true", help="run xargs' FFmpegs in its session "
                        "(default: each in its own, as the workers run theirs)")
    parser.add_argument("--xargs-nice", type=int, default=NICE, help=f"nice level of xargs' FFmpeg (default "
                        f"{NICE}, the workers'; 0: as logged)")
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is not installed")
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-real-") as tmp:
        root = Path(tmp)
        source = root / "input.mp4"
        make_input(ffmpeg, source)
        ours, theirs = [], []
        own_cpu, ffmpeg_cpu, xargs_cpu = [], [], []
        with LocalCluster(root / "cluster", env={"FFRTMP_INPUT_ROOT": str(root)}) as cluster:
            cluster.start_master()
            for name in WORKERS:
                cluster.start_worker(name, *([] if args.prefetch is None else ["--prefetch", str(args.prefetch)]),
                                     slots=1)
            cluster.wait_for_nodes(WORKERS, timeout=180)  # default workers validate their encoders first
            for round_ in range(1, args.rounds + 1):
                own_before, children_before = cluster_cpu(cluster)
                wall, ids = through_ffrtmp(cluster, source, args.transcodes)
                own_after, children_after = cluster_cpu(cluster)
                own_cpu.append(own_after - own_before)
                ffmpeg_cpu.append(children_after - children_before)
                ours.append(wall)
                idle = slot_idle_ms(cluster, ids)
                out_dir = root / f"xargs-{round_}"
                out_dir.mkdir()
                commands = logged_argv(cluster, ids, out_dir)
                xargs_before = reaped_children_cpu()
                theirs.append(through_xargs(commands, root, args.xargs_nice, not args.xargs_same_session))
                xargs_cpu.append(reaped_children_cpu() - xargs_before)
                emit({"bench": "overhead_round", "round": round_, "transcodes": args.transcodes,
                      "ffrtmp_seconds": round(ours[-1], 3), "xargs_seconds": round(theirs[-1], 3),
                      "ratio": round(ours[-1] / theirs[-1], 4), "slot_idle_ms": round(idle, 2),
                      "ffrtmp_own_cpu_s": round(own_cpu[-1], 3), "ffrtmp_ffmpeg_cpu_s": round(ffmpeg_cpu[-1], 3),
                      "xargs_cpu_s": round(xargs_cpu[-1], 3)})
        ratio = sum(ours) / sum(theirs)
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        emit({"bench": "overhead", "system": "ffrtmp", "transcodes": args.transcodes, "rounds": args.rounds,
              "ffrtmp_seconds": round(sum(ours) / len(ours), 3), "xargs_seconds": round(sum(theirs) / len(theirs), 3),
              "ratio": round(ratio, 4), "overhead_percent": round((ratio - 1) * 100, 2),
              "round_ratio_mean": round(statistics.mean(ratios), 4),
              "round_ratio_ci95": round(interval95(ratios), 4),
              "round_ratio_min": round(min(ratios), 4), "round_ratio_max": round(max(ratios), 4),
              # CPU, which other load on the machine moves far less than wall time: what ffrtmp's own processes
              # spent against the FFmpeg work, and all of ffrtmp's CPU against all of xargs'
              "own_cpu_percent_of_ffmpeg": round(100 * sum(own_cpu) / max(sum(xargs_cpu), 1e-9), 2),
              "cpu_ratio": round((sum(own_cpu) + sum(ffmpeg_cpu)) / max(sum(xargs_cpu), 1e-9), 4),
              "work": f"{SIZE} {SECONDS}s {FPS}fps libx264 veryfast 1000k, 2 default workers x 1 slot vs xargs -P 2",
              "prefetch": "worker default" if args.prefetch is None else args.prefetch,
              "xargs_nice": args.xargs_nice, "xargs_own_sessions": not args.xargs_same_session,
              "autogroup": autogroup(),
              "command": " ".join(commands[0])})


if __name__ == "__main__":
    main()
