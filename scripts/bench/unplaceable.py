#!/usr/bin/env python3
"""Head-of-line blocking (H5/F3): many pending `live`/`high` jobs no worker can run, then placeable ones.

A real master (process) with `--jobs` unplaceable jobs pending (label `never=1`, stored before it starts)
and a real `null` worker. Prints one JSON line: the dispatch latency of placeable `batch`/`low` jobs
submitted one at a time (goal p99 <= 10 ms), the idle master's CPU with all of them pending (goal <= 5 % of
a core), and the wait reason the unplaceable ones show. The latency is the submit's round trip: the master
runs the dispatch pass in the submit's own batch and sends the reply and the JOB after it, so the round trip
bounds submit-to-dispatch from above (assigned_at - created_at is 0 by construction: one clock reading).

    python scripts/bench/unplaceable.py [--jobs 200000] [--placeable 200] [--idle-seconds 5]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import emit, summary  # noqa: E402

from ffrtmp.client import Client  # noqa: E402
from ffrtmp.jobspec import validate_submission  # noqa: E402
from ffrtmp.local import LocalCluster, wait_for  # noqa: E402
from ffrtmp.master.store import SqliteStore  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200_000, help="unplaceable jobs pending")
    parser.add_argument("--placeable", type=int, default=200, help="placeable jobs submitted one by one")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds after the worker joins before measuring (the wait reasons are written)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-hol-") as root, LocalCluster(Path(root)) as cluster:
        began = time.monotonic()
        store = SqliteStore(cluster.master_dir / "master.db")
        stuck = validate_submission({"scenario": "hol", "engine": "null", "queue": "live", "priority": "high",
                                     "labels": {"never": "1"}})
        with store.transaction():
            for start in range(0, args.jobs, 50_000):
                store.insert_jobs([stuck] * min(50_000, args.jobs - start), time.time(), 3, tenant="evil")
        store.close()
        stored_s = time.monotonic() - began
        cluster.start_master()
        cluster.start_worker("hol-worker", slots=4)
        assert cluster.master is not None
        with Client(cluster.url, master_key=str(cluster.master_dir / "master.key"), timeout=30,
                    client_key=str(cluster.root / "config" / "client.key_secret")) as client:
            wait_for(lambda: [n for n in client.nodes() if n["status"] == "online"], 60, "the worker to join")
            time.sleep(args.settle)
            cpu0, wall0 = cpu_seconds(cluster.master.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (cpu_seconds(cluster.master.pid) - cpu0) / (time.monotonic() - wall0)
            ids, latencies = [], []
            for _ in range(args.placeable):
                sent = time.perf_counter()
                job_id = client.submit("ok", engine="null", queue="batch", priority="low")
                latencies.append(time.perf_counter() - sent)
                ids.append(job_id)
                client.wait(job_id, timeout=30)
            reason = client.list(status="pending", limit=1)[0].get("reason")
        db = sqlite3.connect(cluster.master_dir / "master.db")
        (dispatched,) = db.execute("SELECT count(*) FROM jobs j JOIN attempts a ON a.job_seq = j.seq AND a.attempt"
                                   f" = 1 WHERE j.id IN ({','.join('?' * len(ids))})", ids).fetchone()
        db.close()
    emit({"bench": "unplaceable", "unplaceable_pending": args.jobs, "store_fill_s": round(stored_s, 1),
          "placeable_dispatched": dispatched, "submit_to_dispatch": summary(latencies),
          "idle_master_cpu_percent": round(100 * idle, 2),
          "idle_seconds": args.idle_seconds, "unplaceable_reason": reason})


if __name__ == "__main__":
    main()
