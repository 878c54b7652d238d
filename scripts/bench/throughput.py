#!/usr/bin/env python3
"""Throughput and dispatch latency of ffrtmp on this machine, as JSON lines.

A real master and 2 real workers (processes, CURVE on) on loopback:
  * throughput: N `null`-engine jobs submitted with `submit_many`; jobs/s from the first submit to the last
    completion, and the enqueue rate on its own;
  * latency: on the idle cluster, single jobs one at a time; submit→running (master timestamps) and
    submit→completed (as the client sees it, polling) p50/p90/p99.

    python scripts/bench/throughput.py [--jobs 20000] [--slots 8] [--singles 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.local import LocalCluster, wait_for  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def throughput(cluster: LocalCluster, jobs: int) -> None:
    with cluster.client(timeout=120) as client:
        base = client.stats()["jobs"]["completed"]
        started = time.perf_counter()
        ids = client.submit_many([{"scenario": "bench", "engine": "null"}] * jobs)
        enqueued = time.perf_counter() - started
        wait_for(lambda: client.stats()["jobs"]["completed"] - base >= jobs, 600, "all jobs to complete", 0.02)
        total = time.perf_counter() - started
    emit({"bench": "throughput", "system": "ffrtmp", "jobs": len(ids), "seconds": round(total, 3),
          "jobs_per_s": round(jobs / total, 1), "enqueue_seconds": round(enqueued, 3),
          "enqueue_per_s": round(jobs / enqueued, 1)})


def latency(cluster: LocalCluster, singles: int) -> None:
    to_running, to_completed = [], []
    with cluster.client() as client:
        for _ in range(singles):
            begin = time.perf_counter()
            job_id = client.submit("bench-latency", engine="null")
            job = client.wait(job_id, poll=0.001)
            to_completed.append(time.perf_counter() - begin)
            to_running.append(parse_time(job["started_at"]) - parse_time(job["created_at"]))
    for name, values in (("submit_to_running", to_running), ("submit_to_completed", to_completed)):
        emit({"bench": "latency", "system": "ffrtmp", "measure": name, "n": len(values),
              "p50_ms": ms(percentile(values, 50)), "p90_ms": ms(percentile(values, 90)),
              "p99_ms": ms(percentile(values, 99)), "mean_ms": ms(statistics.fmean(values))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=8, help="slots per worker (2 workers)")
    parser.add_argument("--singles", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-") as root, LocalCluster(Path(root)) as cluster:
        cluster.start_master()
        names = ["bench-1", "bench-2"]
        for name in names:
            cluster.start_worker(name, slots=args.slots)  # default workers, as users run them
        cluster.wait_for_nodes(names)
        latency(cluster, args.singles)
        throughput(cluster, args.jobs)


if __name__ == "__main__":
    main()
