#!/usr/bin/env python3
"""ffrtmp on the workload the peers get (compare_peers.py), as JSON lines.

A real master and 2 real workers (processes, CURVE on, default engines, several slots each) on loopback; given
several slot counts, each is tried first with a short throughput run (`tune` lines) and the fastest is kept:
  * latency: on the idle cluster, single jobs one at a time. submit→running is the client's clock just before
    `submit` → the worker's start stamp of the attempt, read at full (float) precision from the master's
    SQLite store after the run (the API's ISO times have millisecond resolution); submit→completed is when
    `Client.wait` returns (the client API's own way of waiting for a job);
  * throughput: N `null` jobs via `submit_many`, first submit → last completion, measured twice: with
    throughput.py's own function (which polls `stats` every 20 ms), then learning the end without loading the
    master (see `throughput`), the figure compared with the peers;
  * default workers against `--engines null` ones (`throughput_null_workers`, see there): alternating rounds
    on fresh clusters, the lean way; what detecting FFmpeg and GStreamer costs a default worker;
  * durability: N jobs acknowledged by `submit_many` on a master that is SIGKILLed right after the reply,
    then counted in its store: every acknowledged submit must be there.
Client rate limits are off (`--rate-limit submit=0 --rate-limit read=0 --rate-limit logs=0`): the peers have
none, and one benchmark client asking 1,000 times a second is what they exist to stop. Worker messages keep
the default limit.

    python scripts/bench/compare_ffrtmp.py [--jobs 20000] [--singles 500] [--slots 8[,16,32]] [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import throughput as tp
from benchlib import ROOT, emit, summary

from ffrtmp import __version__
from ffrtmp.local import LocalCluster, wait_for

MASTER_ARGS = ["--rate-limit", "submit=0", "--rate-limit", "read=0", "--rate-limit", "logs=0"]
WORKERS = ["bench-1", "bench-2"]
PY_SPY = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
"""The project venv's py-spy (the test extra's tools live there), else one on PATH."""


NULL_WORKERS = ["--engines", "null"]


def start(root: Path, slots: int, *worker_args: str, db: str | None = None) -> LocalCluster:
    """A master and 2 workers; no `worker_args`: default workers (every engine found, as users run them).

    `db`: the master's store (`--db`, e.g. a postgresql:// URL); default its SQLite file in the data dir.
    """
    cluster = LocalCluster(root, master_args=[*MASTER_ARGS, *(["--db", db] if db else [])])
    cluster.start_master()
    for name in WORKERS:
        cluster.start_worker(name, *worker_args, slots=slots)
    cluster.wait_for_nodes(WORKERS)
    return cluster


def stored_times(db: Path | str, ids: list[str]) -> dict[str, tuple[float, float | None]]:
    """job id → (created_at, started_at) as the store keeps them (float seconds): an SQLite file or a
    postgresql:// URL (read with psycopg; both keep them as double precision)."""
    times: dict[str, tuple[float, float | None]] = {}
    if str(db).startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(str(db), connect_timeout=10) as pg:
            for i in range(0, len(ids), 500):
                found = pg.execute("SELECT id, created_at, started_at FROM jobs WHERE id = ANY(%s)", (ids[i:i + 500],))
                times.update({row[0]: (row[1], row[2]) for row in found})
        return times
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT id, created_at, started_at FROM jobs WHERE id IN ({marks})", chunk)
            times.update({row[0]: (row[1], row[2]) for row in rows})
    return times


def latency(cluster: LocalCluster, singles: int, config: dict[str, Any], system: str = "ffrtmp",
            db: str | None = None) -> None:
    """Single jobs on the idle cluster; `db`: the store the master was started with (default its SQLite file)."""
    submitted: dict[str, float] = {}
    to_completed: list[float] = []
    with cluster.client() as client:
        for i in range(20 + singles):  # the first 20 warm up and are not counted
            begin_wall, begin = time.time(), time.perf_counter()
            job_id = client.submit("bench-latency", engine="null")
            job = client.wait(job_id)
            if job["status"] != "completed":
                raise RuntimeError(f"latency job {job_id} ended {job['status']}: {job.get('error')}")
            if i >= 20:
                to_completed.append(time.perf_counter() - begin)
                submitted[job_id] = begin_wall
    stored = stored_times(db or cluster.master_dir / "master.db", list(submitted))
    to_running = [stored[j][1] - t for j, t in submitted.items() if stored.get(j, (0, None))[1] is not None]
    created_to_running = [stored[j][1] - stored[j][0] for j in submitted if stored.get(j, (0, None))[1] is not None]
    source = "client clock before submit -> worker start stamp (store, float)"
    emit({"bench": "latency", "system": system, "measure": "submit_to_running", **summary(to_running),
          "source": source, **config})
    emit({"bench": "latency", "system": system, "measure": "submit_to_completed", **summary(to_completed),
          "source": "Client.wait returns", **config})
    emit({"bench": "latency", "system": system, "measure": "created_to_running", **summary(created_to_running),
          "source": "master insert -> worker start stamp (store, float)", **config})


@contextlib.contextmanager
def profiled(cluster: LocalCluster, directory: Path | None, seconds: int) -> Any:
    """py-spy the master and one worker for `seconds` while the block runs (collapsed stacks in `directory`)."""
    if directory is None or PY_SPY is None:
        if directory is not None:
            print("py-spy not found (the dev extra's .venv has it): no profile", file=sys.stderr)
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    assert cluster.master is not None
    targets = {"master": cluster.master.pid, "worker": cluster.workers[WORKERS[0]].pid}
    spies = [subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                               "--format", "raw", "--nonblocking", "--output", str(directory / f"{name}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in targets.items()]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()


def throughput_as_published(cluster: LocalCluster, jobs: int, config: dict[str, Any]) -> None:
    """throughput.py's own function (it polls `stats` every 20 ms until all are done), for continuity."""
    plain = tp.emit
    tp.emit = lambda record: plain({**record, **config, "bench": "throughput_stats_polling",
                                    "completion_check": "throughput.py: stats every 20 ms"})
    try:
        tp.throughput(cluster, jobs)
    finally:
        tp.emit = plain


def worker_cpu_seconds(cluster: LocalCluster) -> float:
    """User + system CPU seconds the cluster's worker processes have used so far."""
    return sum(sum(psutil.Process(proc.pid).cpu_times()[:2]) for proc in cluster.workers.values())


def master_cpu_seconds(cluster: LocalCluster) -> float:
    assert cluster.master is not None
    return sum(psutil.Process(cluster.master.pid).cpu_times()[:2])


def run_jobs(cluster: LocalCluster, jobs: int) -> tuple[float, float]:
    """`jobs` null jobs via submit_many: (seconds to enqueue, seconds until the last one completed)."""
    with cluster.client(timeout=120) as client:
        base = client.stats()["jobs"]["completed"]
        started = time.perf_counter()
        ids = client.submit_many([{"scenario": "bench", "engine": "null"}] * jobs)
        enqueued = time.perf_counter() - started
        client.wait(ids[-1], timeout=900)
        wait_for(lambda: client.stats()["jobs"]["completed"] - base >= jobs, 600, "all jobs to complete", 0.02)
        return enqueued, time.perf_counter() - started


def throughput_null_workers(root: Path, slots: int, jobs: int, rounds: int, config: dict[str, Any]) -> None:
    """Default workers against `--engines null` ones, the baseline they are held to (within 10 %).

    Rounds in ABBA order (default, null, null, default, ...: a load that drifts through the run favours
    neither), each on a fresh cluster warmed up with a quarter of the jobs first, so both kinds meet the same
    store history. One `engines_round` line per round; `throughput_null_workers` holds the medians of both
    kinds. The CPU the master and the workers spend per job is given beside jobs/s: on a shared machine it
    moves far less than jobs/s does, and it is what detecting engines could cost.
    """
    rates: dict[str, list[float]] = {"default": [], "null": []}
    cpus: dict[str, list[float]] = {"default": [], "null": []}
    master_cpus: dict[str, list[float]] = {"default": [], "null": []}
    kinds = (("default", []), ("null", NULL_WORKERS))
    for round_ in range(1, rounds + 1):
        for kind, worker_args in kinds if round_ % 2 else kinds[::-1]:
            with tempfile.TemporaryDirectory(dir=root) as where, start(Path(where), slots, *worker_args) as cluster:
                run_jobs(cluster, max(1, jobs // 4))
                cpu, master_cpu = worker_cpu_seconds(cluster), master_cpu_seconds(cluster)
                enqueued, total = run_jobs(cluster, jobs)
                cpu, master_cpu = worker_cpu_seconds(cluster) - cpu, master_cpu_seconds(cluster) - master_cpu
            rates[kind].append(jobs / total)
            cpus[kind].append(1000 * cpu / jobs)
            master_cpus[kind].append(1000 * master_cpu / jobs)
            emit({"bench": "engines_round", "system": "ffrtmp", "round": round_, "workers": kind, "jobs": jobs,
                  "seconds": round(total, 3), "jobs_per_s": round(jobs / total, 1),
                  "worker_cpu_ms_per_job": round(cpus[kind][-1], 4),
                  "master_cpu_ms_per_job": round(master_cpus[kind][-1], 4)})
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    cpu_median = {kind: statistics.median(values) for kind, values in cpus.items()}
    emit({"bench": "throughput_null_workers", "system": "ffrtmp", "jobs": jobs, "rounds": rounds,
          "jobs_per_s": round(median["null"], 1), "default_jobs_per_s": round(median["default"], 1),
          "default_vs_null": round(median["default"] / median["null"], 3),
          "worker_cpu_ms_per_job": round(cpu_median["null"], 4),
          "default_worker_cpu_ms_per_job": round(cpu_median["default"], 4),
          "master_cpu_ms_per_job": round(statistics.median(master_cpus["null"]), 4),
          "default_master_cpu_ms_per_job": round(statistics.median(master_cpus["default"]), 4), **config,
          "setting": f"master + 2 `ffrtmp worker --engines null --slots {slots}` processes, CURVE on"})


def throughput(cluster: LocalCluster, jobs: int, config: dict[str, Any], profile: Path | None) -> None:
    """As throughput.py, but learning the end without loading the master meanwhile.

    throughput.py polls `stats` every 20 ms (a request each, which costs the master a little during the run).
    Here one `Client.wait` on the last job submitted sits until it ends (the master answers it then), and
    `stats` is polled every 20 ms only from there to the last one.
    """
    with profiled(cluster, profile, 600):
        cpu = worker_cpu_seconds(cluster)
        enqueued, total = run_jobs(cluster, jobs)
        cpu = worker_cpu_seconds(cluster) - cpu
    emit({"bench": "throughput", "system": "ffrtmp", "jobs": jobs, "seconds": round(total, 3),
          "jobs_per_s": round(jobs / total, 1), "enqueue_seconds": round(enqueued, 3),
          "enqueue_per_s": round(jobs / enqueued, 1), "worker_cpu_ms_per_job": round(1000 * cpu / jobs, 4),
          "profiled": profile is not None,
          "completion_check": "Client.wait(last id), then stats every 20 ms", **config})
    if profile is not None:
        for name in ("master", "worker"):
            if (profile / f"{name}.txt").exists():
                emit({"bench": "profile", "system": "ffrtmp", "process": name,
                      **hot_spots(profile / f"{name}.txt")})


def hot_spots(path: Path, top: int = 12) -> dict[str, Any]:
    """The functions with the most samples in a py-spy raw (collapsed) profile: own time and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "self_pct": share(own),
            "inclusive_pct": share(Counter({k: v for k, v in inclusive.items() if v < 0.97 * total}))}


def durability(root: Path, jobs: int) -> None:
    """Acknowledged submits survive a SIGKILL of the master that acknowledged them."""
    with LocalCluster(root, master_args=MASTER_ARGS) as cluster:
        cluster.start_master()
        with cluster.client(timeout=60) as client:
            ids = client.submit_many([{"scenario": "bench-durable", "engine": "null"}] * jobs)
        assert cluster.master is not None
        cluster.master.send_signal(signal.SIGKILL)
        cluster.master.wait()
        found = len(stored_times(cluster.master_dir / "master.db", ids))
    emit({"bench": "durability", "system": "ffrtmp", "acked": len(ids), "found_after_kill9": found,
          "lost": len(ids) - found, "store": "SQLite WAL, synchronous=NORMAL (survives a process crash; "
          "the last commits can be lost on power loss)"})


def tune_slots(root: Path, candidates: list[int], jobs: int) -> int:
    """A short throughput run per slot count (as the peers' settings are tried); returns the fastest."""
    rates = {}
    for slots in candidates:
        config = {"version": __version__, "variant": f"slots:{slots}", "slots": slots,
                  "setting": f"2 workers x {slots} slots", "broker": "SQLite WAL"}
        with tempfile.TemporaryDirectory(dir=root) as where, start(Path(where), slots) as cluster:
            enqueued, total = run_jobs(cluster, jobs)
        rates[slots] = jobs / total
        emit({"bench": "tune", "system": "ffrtmp", "jobs": jobs, "seconds": round(total, 3),
              "jobs_per_s": round(jobs / total, 1), "enqueue_seconds": round(enqueued, 3),
              "enqueue_per_s": round(jobs / enqueued, 1), **config})
    return max(rates, key=lambda slots: rates[slots])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=500)
    parser.add_argument("--slots", default="8", help="slots per worker (2 workers); a comma list tries each with "
                        "--tune-jobs jobs first and keeps the fastest")
    parser.add_argument("--tune-jobs", type=int, default=5000)
    parser.add_argument("--engine-rounds", type=int, default=4, help="rounds of default against `--engines null` "
                        "workers, in ABBA order (0: skip)")
    parser.add_argument("--durable-jobs", type=int, default=5000, help="jobs in the kill -9 durability check (0: skip)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the master and a worker during throughput")
    args = parser.parse_args()
    candidates = [int(s) for s in args.slots.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-") as root:
        slots = tune_slots(Path(root), candidates, args.tune_jobs) if len(candidates) > 1 else candidates[0]
        config = {"version": __version__, "variant": f"slots:{slots}", "slots": slots,
                  "setting": f"master + 2 `ffrtmp worker --slots {slots}` processes (default engines), CURVE on",
                  "broker": "SQLite WAL (acknowledged submits durable)"}
        with start(Path(root) / "cluster", slots) as cluster:
            latency(cluster, args.singles, config)
            throughput_as_published(cluster, args.jobs, config)
            throughput(cluster, args.jobs, config, args.profile)
        if args.engine_rounds:
            throughput_null_workers(Path(root), slots, args.jobs, args.engine_rounds, config)
        if args.durable_jobs:
            durability(Path(root) / "durability", args.durable_jobs)


if __name__ == "__main__":
    main()
