#!/usr/bin/env python3
"""Celery, RQ, Dramatiq and Huey on the workload of throughput.py, as JSON lines (one system at a time).

Each system runs as real processes: 2 worker processes with the fastest of the settings its docs recommend
for short tasks (CANDIDATES; each tried first with a short throughput run, reported as `tune` lines), a
Redis broker on loopback (a private `redis-server` with persistence off unless --redis-url is given; its
database is emptied between systems), and no-op tasks that report completion through Redis the same way for
every system (see peerapps/benchtask.py):
  * latency: on idle workers, single tasks one at a time: submit→running (the client's clock before the
    enqueue → the task's first line) and submit→completed (→ the client's BLPOP returns) p50/p90/p99;
  * throughput: N tasks enqueued from one client as fast as its API allows; tasks/s from the first enqueue
    to the last completion (the completion counter polled every 5 ms), and the enqueue rate on its own.
A system whose package is missing or whose workers fail is reported as an `error` line; the others go on.

    python scripts/bench/compare_peers.py [--systems celery,rq,dramatiq,huey] [--jobs 20000] [--singles 500]
                                          [--tune-jobs 5000] [--variant celery=threads:8]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import BENCH, Children, emit, redis_server, summary

APPS = BENCH / "peerapps"
BIN = Path(sys.executable).parent
WORKERS = 2
READY_TIMEOUT = 60.0


@dataclass
class Variant:
    """How a system's 2 worker processes are started, described as they are in the report."""

    description: str
    argv: Callable[[str, int], list[list[str]]]
    """(redis url, threads) → one command line per process to start."""


def _celery(pool: str) -> Callable[[str, int], list[list[str]]]:
    def argv(url: str, threads: int) -> list[list[str]]:
        concurrency = ["-c", str(threads)] if pool != "solo" else []
        return [[str(BIN / "celery"), "-A", "celery_app", "worker", "-P", pool, *concurrency, "-n", f"w{i}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
                for i in range(1, WORKERS + 1)]
    return argv


def _rq(worker_class: str) -> Callable[[str, int], list[list[str]]]:
    def argv(url: str, threads: int) -> list[list[str]]:
        return [[str(BIN / "rq"), "worker-pool", "-n", str(WORKERS), "-w", worker_class, "-u", url, "-P", str(APPS),
                 "-l", "WARNING", "bench"]]
    return argv


def _dramatiq(url: str, threads: int) -> list[list[str]]:
    return [[str(BIN / "dramatiq"), "dramatiq_app", "--processes", str(WORKERS), "--threads", str(threads),
             "--path", str(APPS)]]


def _huey(kind: str) -> Callable[[str, int], list[list[str]]]:
    def argv(url: str, threads: int) -> list[list[str]]:
        base = [str(BIN / "huey_consumer"), "huey_app.huey", "-d", "0.001", "-q"]
        if kind == "process":
            return [[*base, "-k", "process", "-w", str(WORKERS)]]
        return [[*base, "-k", "thread", "-w", str(threads)] for _ in range(WORKERS)]
    return argv


VARIANTS: dict[str, dict[str, Variant]] = {
    "celery": {
        "threads": Variant("2 `celery worker -P threads -c {threads}` processes, prefetch multiplier 64, "
                           "no gossip/mingle/heartbeat, results ignored", _celery("threads")),
        "solo": Variant("2 `celery worker -P solo` processes, prefetch multiplier 64", _celery("solo")),
        "prefork": Variant("2 `celery worker -P prefork -c {threads}` processes", _celery("prefork")),
    },
    "rq": {
        "simple": Variant("`rq worker-pool -n 2 -w rq.worker.SimpleWorker` (jobs run in the worker process, "
                          "no fork per job: RQ's own benchmark notes call it ~6x faster)",
                          _rq("rq.worker.SimpleWorker")),
        "fork": Variant("`rq worker-pool -n 2` (default Worker: one fork per job)", _rq("rq.worker.Worker")),
    },
    "dramatiq": {
        "default": Variant("`dramatiq --processes 2 --threads {threads}` (Redis broker)", _dramatiq),
    },
    "huey": {
        "threads": Variant("2 `huey_consumer -k thread -w {threads} -d 0.001` processes (blocking Redis reads)",
                           _huey("thread")),
        "process": Variant("`huey_consumer -k process -w 2 -d 0.001`", _huey("process")),
    },
}
PACKAGE = {"celery": "celery", "rq": "rq", "dramatiq": "dramatiq", "huey": "huey"}


class Enqueuer:
    """The client side of one system: enqueue one tagged probe, or N plain tasks, through its own API."""

    def __init__(self, system: str, url: str) -> None:
        sys.path.insert(0, str(APPS))
        self.system = system
        if system == "celery":
            import celery_app

            self.one: Callable[[str], object] = celery_app.noop.delay
        elif system == "rq":
            import rq_app
            from redis import Redis
            from rq import Queue

            queue = Queue("bench", connection=Redis.from_url(url))
            self.rq_queue, self.rq_func = queue, rq_app.noop
            self.one = lambda tag: queue.enqueue(rq_app.noop, tag)
        elif system == "dramatiq":
            import dramatiq_app

            self.one = dramatiq_app.noop.send
        elif system == "huey":
            import huey_app

            self.one = huey_app.noop
        else:
            raise ValueError(system)

    def many(self, count: int) -> None:
        if self.system == "rq":  # RQ has a batch API (one pipeline per chunk): use it, as ffrtmp uses submit_many
            from rq import Queue

            for start in range(0, count, 1000):
                batch = [Queue.prepare_data(self.rq_func, ("",)) for _ in range(min(1000, count - start))]
                self.rq_queue.enqueue_many(batch)
            return
        one = self.one
        for _ in range(count):
            one("")


def wait_ready(redis_conn: Any, enqueuer: Enqueuer, children: Children) -> None:
    """Probe until tasks came back from as many distinct worker processes as were asked for (or one only)."""
    pids: set[str] = set()
    deadline = time.monotonic() + READY_TIMEOUT
    round_ = 0
    while time.monotonic() < deadline:
        children.check()
        round_ += 1
        for i in range(20):
            enqueuer.one(f"ready-{round_}-{i}")
        got = 0
        while got < 20:
            item = redis_conn.blpop("bench:probe", timeout=2)
            if item is None:
                break
            got += 1
            pids.add(item[1].decode().split()[2])
        if len(pids) >= WORKERS:
            return
        time.sleep(0.5)
    if not pids:
        raise RuntimeError("no task completed within 60 s: the workers did not start")


def latency(redis_conn: Any, enqueuer: Enqueuer, system: str, singles: int, config: dict[str, object]) -> None:
    to_running, to_completed = [], []
    for i in range(singles):
        tag = f"lat-{i}"
        begin = time.time()
        enqueuer.one(tag)
        while True:
            item = redis_conn.blpop("bench:probe", timeout=30)
            done = time.time()
            if item is None:
                raise RuntimeError(f"latency probe {i} did not complete within 30 s")
            got_tag, started, _pid = item[1].decode().split()
            if got_tag == tag:
                break
            if got_tag.startswith("lat-"):
                raise RuntimeError(f"probe {got_tag} came back while waiting for {tag}")
            # a warm-up or readiness probe that outlived its own wait (a loaded machine): not a measurement
        to_running.append(float(started) - begin)
        to_completed.append(done - begin)
    for name, values in (("submit_to_running", to_running), ("submit_to_completed", to_completed)):
        emit({"bench": "latency", "system": system, "measure": name, **summary(values), **config})


def throughput(redis_conn: Any, enqueuer: Enqueuer, system: str, jobs: int, config: dict[str, Any]) -> float:
    redis_conn.delete("bench:done")
    started = time.time()
    enqueuer.many(jobs)
    enqueued = time.time() - started
    deadline = time.monotonic() + 900
    while int(redis_conn.get("bench:done") or 0) < jobs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {int(redis_conn.get('bench:done') or 0)} of {jobs} done after 900 s")
        time.sleep(0.005)
    total = time.time() - started
    emit({"bench": "throughput", "system": system, "jobs": jobs, "seconds": round(total, 3),
          "jobs_per_s": round(jobs / total, 1), "enqueue_seconds": round(enqueued, 3),
          "enqueue_per_s": round(jobs / enqueued, 1), **config})
    return jobs / total


CANDIDATES = {
    "celery": ["solo", "threads:2", "threads:8", "prefork:2"],
    "rq": ["simple"],  # the forking Worker ran 5,000 jobs at ~80/s here, 4x slower than SimpleWorker: not tried
    "dramatiq": ["default:2", "default:8", "default:32"],
    "huey": ["threads:2", "threads:8", "process"],
}
"""Settings tried (a short throughput run each) before the measured run, which uses the fastest."""


def parse_setting(system: str, text: str, threads: int) -> tuple[str, int]:
    name, _, count = text.partition(":")
    if name not in VARIANTS.get(system, {}):
        raise ValueError(f"unknown setting {system}={text} (known: {', '.join(VARIANTS.get(system, {}))})")
    return name, int(count) if count else threads


@contextlib.contextmanager
def workers(system: str, variant: str, threads: int, url: str, log_dir: Path, conn: Any,
            enqueuer: Enqueuer) -> Iterator[None]:
    """The system's worker processes, started, answering tasks, and stopped afterwards."""
    conn.flushdb()
    env = {"BENCH_REDIS_URL": url, "PYTHONPATH": str(APPS)}
    with Children(log_dir / f"{system}-{variant}-{threads}") as children:
        for index, argv in enumerate(VARIANTS[system][variant].argv(url, threads)):
            children.start(f"{system}-{index + 1}", argv, env=env, cwd=APPS)
        wait_ready(conn, enqueuer, children)
        for i in range(20):  # warm-up, not measured
            enqueuer.one(f"warm-{i}")
            conn.blpop("bench:probe", timeout=10)
        yield
        children.check()


def run_system(system: str, settings: list[str], url: str, jobs: int, singles: int, threads: int, tune_jobs: int,
               log_dir: Path) -> None:
    try:
        version = importlib.metadata.version(PACKAGE[system])
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"{PACKAGE[system]} is not installed in {sys.prefix}") from None
    import redis

    os.environ["BENCH_REDIS_URL"] = url
    conn = redis.Redis.from_url(url)
    enqueuer = Enqueuer(system, url)

    def config(variant: str, count: int) -> dict[str, Any]:
        description = VARIANTS[system][variant].description
        return {"version": version, "variant": f"{variant}:{count}" if "{threads}" in description else variant,
                "setting": description.format(threads=count),
                "broker": "redis (persistence off)"}

    chosen = [parse_setting(system, text, threads) for text in settings]
    if len(chosen) > 1 and tune_jobs > 0:
        rates = {}
        for variant, count in chosen:
            with workers(system, variant, count, url, log_dir, conn, enqueuer):
                rates[(variant, count)] = throughput(conn, enqueuer, system, tune_jobs,
                                                     {**config(variant, count), "bench": "tune"})
        chosen = [max(rates, key=lambda key: rates[key])]
    variant, count = chosen[0]
    with workers(system, variant, count, url, log_dir, conn, enqueuer):
        latency(conn, enqueuer, system, singles, config(variant, count))
        throughput(conn, enqueuer, system, jobs, config(variant, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="celery,rq,dramatiq,huey")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process where a setting names none")
    parser.add_argument("--variant", action="append", default=[], metavar="SYSTEM=NAME[:THREADS]",
                        help="use this setting instead of trying CANDIDATES, e.g. celery=threads:8")
    parser.add_argument("--tune-jobs", type=int, default=5000,
                        help="jobs in each trial of CANDIDATES (0: no trials, use the first candidate)")
    parser.add_argument("--redis-url", default=None, help="use this Redis (its database is emptied!) instead of "
                        "a private redis-server")
    args = parser.parse_args()
    fixed = dict(v.split("=", 1) for v in args.variant)
    with redis_server(args.redis_url) as url, tempfile.TemporaryDirectory(prefix="ffrtmp-bench-peers-") as logs:
        for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
            try:
                if system not in VARIANTS:
                    raise ValueError(f"unknown system {system} (known: {', '.join(VARIANTS)})")
                settings = [fixed[system]] if system in fixed else CANDIDATES[system]
                run_system(system, settings, url, args.jobs, args.singles, args.threads, args.tune_jobs, Path(logs))
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                emit({"bench": "error", "system": system, "error": f"{type(exc).__name__}: {exc}"[:500]})


if __name__ == "__main__":
    main()
