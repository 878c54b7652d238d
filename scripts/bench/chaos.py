#!/usr/bin/env python3
"""Chaos: jobs keep flowing while workers and the master are killed with SIGKILL and restarted.

N jobs (default 500; every 2nd a short real FFmpeg transcode, the rest `null`) on 3 workers; every
--interval seconds a random worker is SIGKILLed and restarted, and every 4th time the master instead.
At the end it prints one JSON line: submitted, completed, lost (must be 0), completed_twice (must be 0),
outputs_missing (completed jobs whose file is absent; must be 0), max_attempts, and how long after a
worker's death its jobs were dispatched again (p50/max; the goal is at most node-timeout + 1 s).

    python scripts/bench/chaos.py [--jobs 500] [--node-timeout 10s] [--interval 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.client import TERMINAL  # noqa: E402
from ffrtmp.errors import MasterUnreachable  # noqa: E402
from ffrtmp.local import LocalCluster  # noqa: E402
from ffrtmp.units import parse_duration  # noqa: E402

WORKERS = ["chaos-1", "chaos-2", "chaos-3"]


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def jobs_for(count: int) -> list[dict[str, Any]]:
    real = {"scenario": "chaos-real", "engine": "ffmpeg", "resolution": "320x180", "fps": 30, "duration": 4,
            "codec": "h264", "bitrate": "500k"}
    null = {"scenario": "chaos-null", "engine": "null"}
    return [real if i % 2 == 0 else null for i in range(count)]


class Chaos:
    def __init__(self, cluster: LocalCluster, interval: float, rng: random.Random) -> None:
        self.cluster = cluster
        self.interval = interval
        self.rng = rng
        self.stop = threading.Event()
        self.worker_deaths: list[tuple[str, float]] = []
        self.master_kills: list[float] = []

    def run(self) -> None:
        round_ = 0
        while not self.stop.wait(self.interval):
            round_ += 1
            if round_ % 4 == 0:
                self.kill_master()
            else:
                self.kill_worker(self.rng.choice(WORKERS))

    def kill_worker(self, name: str) -> None:
        proc = self.cluster.workers[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.worker_deaths.append((name, time.time()))
        time.sleep(1.0)
        self.cluster.start_worker(name, slots=2)

    def kill_master(self) -> None:
        assert self.cluster.master is not None
        self.cluster.master.send_signal(signal.SIGKILL)
        self.cluster.master.wait()
        self.master_kills.append(time.time())
        time.sleep(0.5)
        self.cluster.start_master(port=self.cluster.port)


def redispatch_delays(jobs: list[dict[str, Any]], deaths: list[tuple[str, float]],
                      master_kills: list[float]) -> tuple[list[float], int]:
    """For each attempt lost with a killed worker: its death → the job's next assignment.

    Deaths with a master restart in between are counted apart: a restarted master gives every node the
    node timeout from its own start, by design.
    """
    delays, overlapped = [], 0
    for job in jobs:
        history = job["history"]
        for index, event in enumerate(history):
            if event["status"] != "pending" or not (event.get("reason") or "").startswith("worker_lost"):
                continue
            lost_at = parse_time(event["at"])
            died = [t for name, t in deaths if name == event.get("node") and t <= lost_at]
            following = next((e for e in history[index + 1:] if e["status"] == "assigned"), None)
            if died and following is not None:
                death, redispatched = max(died), parse_time(following["at"])
                if any(death <= kill <= redispatched for kill in master_kills):
                    overlapped += 1
                else:
                    delays.append(redispatched - death)
    return delays, overlapped


def outputs_missing(jobs: list[dict[str, Any]]) -> int:
    """Completed jobs whose file output does not exist or is empty (must be 0)."""
    missing = 0
    for job in jobs:
        if job["status"] == "completed" and job["output"]:
            path = Path(job["output"])
            missing += not path.is_file() or path.stat().st_size == 0
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--node-timeout", default="10s")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    node_timeout = parse_duration(args.node_timeout)
    with tempfile.TemporaryDirectory(prefix="ffrtmp-chaos-") as root:
        cluster = LocalCluster(Path(root), master_args=["--node-timeout", args.node_timeout,
                                                        "--retry-backoff", "500ms", "--max-retries", "20"])
        with cluster:
            cluster.start_master()
            for name in WORKERS:
                cluster.start_worker(name, slots=2)
            cluster.wait_for_nodes(WORKERS)
            started = time.time()
            with cluster.client(timeout=30) as client:
                ids = client.submit_many(jobs_for(args.jobs))
            chaos = Chaos(cluster, args.interval, random.Random(args.seed))
            thread = threading.Thread(target=chaos.run, daemon=True)
            thread.start()
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    with cluster.client(timeout=5) as client:
                        stats = client.stats()["jobs"]
                except MasterUnreachable:
                    time.sleep(0.5)
                    continue
                if stats["completed"] + stats["failed"] + stats["canceled"] >= args.jobs:
                    break
                time.sleep(0.5)
            chaos.stop.set()
            thread.join()
            wall = time.time() - started
            with cluster.client(timeout=30) as client:
                jobs = [client.get(job_id) for job_id in ids]
            missing = outputs_missing(jobs)  # while the workers' dirs still exist
    completed = [j for j in jobs if j["status"] == "completed"]
    twice = [j for j in jobs if sum(e["status"] == "completed" for e in j["history"]) > 1]
    delays, overlapped = redispatch_delays(jobs, chaos.worker_deaths, chaos.master_kills)
    print(json.dumps({
        "bench": "chaos", "submitted": len(ids), "completed": len(completed),
        "lost": sum(1 for j in jobs if j["status"] not in TERMINAL) + sum(1 for j in jobs if j["status"] == "failed"),
        "completed_twice": len(twice), "max_attempts": max(j["attempts"] for j in jobs),
        "worker_kills": len(chaos.worker_deaths), "master_kills": len(chaos.master_kills),
        "redispatch_after_death_p50_s": round(statistics.median(delays), 2) if delays else None,
        "redispatch_after_death_max_s": round(max(delays), 2) if delays else None,
        "redispatch_goal_s": node_timeout + 1, "redispatches_measured": len(delays),
        "redispatches_across_a_master_restart": overlapped, "outputs_missing": missing,
        "seconds": round(wall, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
