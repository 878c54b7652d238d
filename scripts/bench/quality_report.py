"""`ffrtmp report` on a big store: the store's report queries over N completed jobs (target: 100,000 in ≤ 1 s).

The jobs go in through the Store API (submit, assign, finish with worker-style metrics), on SQLite and, with
--postgres URL, on PostgreSQL; then each report grouping and the rate–quality points are timed, best of
--rounds, and printed as JSON lines (`bench: quality_report`). A store filled once is reused (--keep DIR).

    python scripts/bench/quality_report.py --jobs 100000 [--postgres postgresql://postgres@127.0.0.1:5432/DB]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from throughput import emit  # noqa: E402  (the suite's JSON-lines printer)

from ffrtmp.jobspec import validate_submission  # noqa: E402
from ffrtmp.master.store import Ending, Store, open_store  # noqa: E402
from ffrtmp.master.store.report import GROUPINGS  # noqa: E402

ENCODERS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
BITRATES = (500, 1000, 2000, 4000, 8000)
SCENARIOS = ("720p30-h264", "1080p60-h265", "4K60-h264", "vod")
CHUNK = 5000


def worker_metrics(rng: random.Random, codec: str, kbps: int) -> dict[str, Any]:
    """Figures shaped like a quality-measuring worker's (issue 18), made up but plausible."""
    vmaf = min(99.0, 40 + 12 * (kbps / 500) ** 0.5 + rng.uniform(-2, 2))
    cpu = rng.uniform(2, 40)
    return {"engine": "ffmpeg", "encoder": ENCODERS[codec], "fps": rng.uniform(20, 300),
            "avg_fps": rng.uniform(20, 300), "speed": rng.uniform(0.5, 8), "bitrate": kbps * rng.uniform(0.9, 1.05),
            "output_bytes": kbps * 125 * 10, "psnr_db": 28 + vmaf / 8, "ssim": 0.9 + vmaf / 1000, "vmaf": vmaf,
            "quality": "vmaf", "cpu_seconds": cpu, "peak_rss_bytes": 200_000_000, "energy_joules": cpu * 15,
            "energy_source": "estimated", "cost": cpu / 3600 * 0.05, "currency": "EUR"}


def fill(store: Store, jobs: int, seed: int = 7, tenants: int = 4, nodes: int = 8, now: float | None = None) -> None:
    """`jobs` completed jobs through the Store API, in chunks of CHUNK per transaction."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    done = 0
    while done < jobs:
        n = min(CHUNK, jobs - done)
        picks = [(rng.choice(list(ENCODERS)), rng.choice(BITRATES), rng.choice(SCENARIOS)) for _ in range(n)]
        with store.transaction():
            for tenant in range(tenants):
                mine = picks[tenant::tenants]
                specs = [validate_submission({"scenario": s, "codec": c, "bitrate": f"{k}k", "engine": "ffmpeg",
                                              "labels": {"group": f"sweep-{(done + i) // 500}"}})
                         for i, (c, k, s) in enumerate(mine)]
                ids = store.insert_jobs(specs, now - 3600, 3, tenant=f"tenant-{tenant}")
                endings = []
                for job_id, (codec, kbps, _) in zip(ids, mine, strict=True):
                    attempt = store.assign_job(job_id, f"node-{rng.randrange(nodes)}", now - 3500)["attempt"]
                    endings.append(Ending(job_id, attempt, "completed", now - rng.uniform(0, 7 * 86400),
                                          metrics=worker_metrics(rng, codec, kbps), started_at=now - 3500))
                store.finish_jobs(endings)
        done += n


def best_of(rounds: int, call: Any) -> tuple[dict[str, float], Any]:
    """The best wall time and this process's CPU time of `rounds` calls (on a loaded machine the CPU time
    is the steadier figure for SQLite, which runs in this process; PostgreSQL's work is the server's)."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = call()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return {"seconds": round(wall, 4), "cpu_seconds": round(cpu, 4)}, result


def measure(store: Store, backend: str, jobs: int, rounds: int) -> None:
    for by in GROUPINGS:
        took, rows = best_of(rounds, lambda by=by: store.job_report(by))
        emit({"bench": "quality_report", "backend": backend, "jobs": jobs, "query": f"by {by}",
              "groups": len(rows), **took, "counted": sum(r["jobs"] for r in rows)})
    took, rows = best_of(rounds, lambda: store.job_report("encoder", since=time.time() - 86400))
    emit({"bench": "quality_report", "backend": backend, "jobs": jobs, "query": "by encoder --since 24h",
          "groups": len(rows), **took, "counted": sum(r["jobs"] for r in rows)})
    took, points = best_of(rounds, lambda: store.rate_quality())
    emit({"bench": "quality_report", "backend": backend, "jobs": jobs, "query": "rate-quality points",
          "groups": len(points), **took, "counted": sum(p["jobs"] for p in points)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="also on this PostgreSQL database (it must be empty or ffrtmp's)")
    parser.add_argument("--keep", type=Path, help="SQLite store directory to reuse (filled on the first run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.keep or Path(scratch)
        path = directory / "master.db"
        fresh = not path.exists()
        store = open_store(path, 0)
        if fresh:
            start = time.perf_counter()
            fill(store, args.jobs)
            emit({"bench": "quality_report_fill", "backend": "sqlite", "jobs": args.jobs,
                  "seconds": round(time.perf_counter() - start, 1)})
        measure(store, "sqlite", store.status_counts().get("completed", 0), args.rounds)
        store.close()
    if args.postgres:
        store = open_store(args.postgres, 0)
        if store.status_counts().get("completed", 0) < args.jobs:
            fill(store, args.jobs - store.status_counts().get("completed", 0))
        measure(store, "postgresql", store.status_counts().get("completed", 0), args.rounds)
        store.close()


if __name__ == "__main__":
    main()
