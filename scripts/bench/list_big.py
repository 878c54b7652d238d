#!/usr/bin/env python3
"""`jobs list` on a big store: 1,000,000 finished jobs in SQLite and in PostgreSQL, side by side, as JSON lines.

Each store is filled the way scale.py fills SQLite (the store's own `insert_jobs` in chunks of 50,000 over 30
days, then one UPDATE making them completed, failed and canceled, with nodes and metrics), then a real master
serves it (`--db`; PostgreSQL on a fresh database of the server at --pg-url, dropped afterwards) and the
client's `list` (limit 50: no filter, `--status completed`, `--status failed`, a tenant's, and the second page
by cursor) is timed --calls times each. The target (issue 16): ≤ 100 ms with 1,000,000 jobs stored.

    python scripts/bench/list_big.py [--jobs 1000000] [--calls 20] [--stores sqlite,postgresql]
                                     [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import emit  # noqa: E402

from ffrtmp.jobspec import validate_submission  # noqa: E402
from ffrtmp.local import LocalCluster  # noqa: E402
from ffrtmp.master.store import Store, open_store  # noqa: E402

CHUNK = 50_000
TARGET_MS = 100.0
FINISH = {  # the same rows in both dialects: completed, every 33rd failed, every 100th (+1) canceled
    "sqlite": ("UPDATE jobs SET status = 'completed', attempts = 1, node = printf('node-%03d', seq % 1000),"
               " progress = 1.0, started_at = created_at + 0.5, finished_at = created_at + 61,"
               " metrics = '{\"wall_seconds\":60.5,\"avg_fps\":29.8}'"),
    "postgresql": ("UPDATE jobs SET status = 'completed', attempts = 1, node = 'node-' || lpad((seq % 1000)::text,"
                   " 3, '0'), progress = 1.0, started_at = created_at + 0.5, finished_at = created_at + 61,"
                   " metrics = '{\"wall_seconds\":60.5,\"avg_fps\":29.8}'"),
}
FAILED = ("UPDATE jobs SET status = 'failed', progress = NULL, failure = 'encoder_error',"
          " error = 'ffmpeg exited with 1: Conversion failed!' WHERE seq % 33 = 0")
CANCELED = ("UPDATE jobs SET status = 'canceled', progress = NULL, failure = 'canceled',"
            " error = 'canceled by user' WHERE seq % 100 = 1")


def fill(store: Store, dialect: str, count: int) -> None:
    spec = validate_submission({"scenario": "archive", "engine": "ffmpeg", "resolution": "1280x720",
                                "bitrate": "2500k", "duration": 60, "output": "out/archive.mp4"})
    span, now = 30 * 86400.0, time.time()
    for start in range(0, count, CHUNK):
        tenant = "" if (start // CHUNK) % 4 else "acme"  # a quarter of the jobs are one tenant's
        with store.transaction():
            store.insert_jobs([spec] * min(CHUNK, count - start), now - span + span * start / count, 3,
                              tenant=tenant)
    with store.transaction():
        for statement in (FINISH[dialect], FAILED, CANCELED):
            store.conn.execute(statement)
    # history rows are not what list reads; the hot table is


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    import psycopg

    name = f"ffrtmp_bench_list_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(call: Callable[[], Any], count: int) -> list[float]:
    values = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        values.append((time.perf_counter() - began) * 1000)
    return values


def measure(store_name: str, db: str, root: Path, args: argparse.Namespace) -> None:
    began = time.perf_counter()
    store = open_store(db if store_name == "postgresql" else Path(db), 0)
    try:
        fill(store, store_name, args.jobs)
    finally:
        store.close()
    emit({"bench": "list_store_build", "store": store_name, "jobs": args.jobs,
          "seconds": round(time.perf_counter() - began, 1)})
    with LocalCluster(root) as cluster:
        cluster.start_master(["--db", db, "--rate-limit", "read=0"])
        with cluster.client(timeout=60) as client:
            first = client.request("list", {"limit": 50})
            cursor = first.get("next")
            calls: dict[str, Callable[[], Any]] = {
                "all": lambda: client.list(limit=50),
                "completed": lambda: client.list(status="completed", limit=50),
                "failed": lambda: client.list(status="failed", limit=50),
                "second_page": lambda: client.request("list", {"limit": 50, "cursor": cursor}),
            }
            for name, call in calls.items():
                call()  # warm: the first call reads cold pages
                values = timed(call, args.calls)
                p50 = statistics.median(values)
                emit({"bench": "jobs_list", "store": store_name, "jobs": args.jobs, "query": name,
                      "calls": args.calls, "p50_ms": round(p50, 2), "max_ms": round(max(values), 2),
                      "target_ms": TARGET_MS, "met": p50 <= TARGET_MS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-list-") as tmp:
        for store_name in args.stores.split(","):
            root = Path(tmp) / store_name
            if store_name == "sqlite":
                (root / "master").mkdir(parents=True)
                measure(store_name, str(root / "master" / "master.db"), root, args)
            elif store_name == "postgresql":
                with postgres_database(args.pg_url) as url:
                    measure(store_name, url, root, args)
            else:
                raise SystemExit(f"--stores: {store_name!r} is neither sqlite nor postgresql")


if __name__ == "__main__":
    main()
