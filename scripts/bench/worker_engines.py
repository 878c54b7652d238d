#!/usr/bin/env python3
"""Default workers (every engine found: FFmpeg, GStreamer) against `--engines null` workers, side by side.

The same null-job load as throughput.py (2 workers x N slots, a real master, CURVE on), in alternating
rounds so that both kinds see the same machine: jobs/s, and the workers' CPU milliseconds per job (which a
busy shared machine disturbs far less than jobs/s). One JSON line per round, then a summary line.

    python scripts/bench/worker_engines.py [--jobs 20000] [--rounds 2] [--slots 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.local import LocalCluster, wait_for  # noqa: E402

KINDS = {"default": [], "null": ["--engines", "null"]}


def one_round(kind: str, jobs: int, slots: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-") as root, LocalCluster(Path(root)) as cluster:
        cluster.start_master()
        names = ["bench-1", "bench-2"]
        for name in names:
            cluster.start_worker(name, *KINDS[kind], slots=slots)
        cluster.wait_for_nodes(names, timeout=180)  # default workers validate their encoders first
        workers = [psutil.Process(proc.pid) for proc in cluster.workers.values()]
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in workers)
        with cluster.client(timeout=120) as client:
            base = client.stats()["jobs"]["completed"]
            started = time.perf_counter()
            client.submit_many([{"scenario": "bench", "engine": "null"}] * jobs)
            wait_for(lambda: client.stats()["jobs"]["completed"] - base >= jobs, 600, "all jobs to complete", 0.02)
            seconds = time.perf_counter() - started
        cpu = sum(sum(p.cpu_times()[:2]) for p in workers) - cpu_before
    return {"bench": "worker_engines", "workers": kind, "jobs": jobs, "slots": f"2x{slots}",
            "seconds": round(seconds, 3), "jobs_per_s": round(jobs / seconds, 1),
            "worker_cpu_ms_per_job": round(1000 * cpu / jobs, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8, help="slots per worker (2 workers)")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            record = one_round(kind, args.jobs, args.slots)
            rates[kind].append(args.jobs / float(str(record["seconds"])))
            print(json.dumps(record), flush=True)
    median = {kind: round(statistics.median(values), 1) for kind, values in rates.items()}
    print(json.dumps({"bench": "worker_engines", "summary": True, "median_jobs_per_s": median,
                      "default_vs_null": round(median["default"] / median["null"], 3)}), flush=True)


if __name__ == "__main__":
    main()
