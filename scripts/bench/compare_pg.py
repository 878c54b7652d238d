#!/usr/bin/env python3
"""ffrtmp on PostgreSQL against Procrastinate and PgQueuer on the same server, and ffrtmp on SQLite, as JSON lines.

Issue 16's target: throughput on PostgreSQL, default workers, at least 2x the better of Procrastinate and PgQueuer
(their default workers, the same database server, the same run) and at least 50 % of ffrtmp on SQLite;
submit→running p50 ≤ 3 ms on an idle cluster.

Every system runs as real processes, 2 worker processes each, on a fresh database of its own on the server of
`--pg-url` (`CREATE DATABASE bench_<system>_<random>`, dropped at the end):
  * ffrtmp-pg: a master with `--db postgresql://.../<fresh db>` and 2 default workers (`ffrtmp worker --slots S`,
    every engine found), as compare_ffrtmp.py starts them; ffrtmp-sqlite: the same with the default store;
  * procrastinate: 2 `procrastinate --app=procrastinate_app.app worker` processes (every default);
  * pgqueuer: 2 `pgq run pgqueuer_app:main` processes (every default).
Throughput: `--rounds` rounds, the systems in ABBA order (round 1 in `--systems` order, round 2 reversed, ...) so
a load that drifts through the run favours none; each round on a fresh database and fresh workers, warmed up
with `--warmup` tasks (a `warmup` line), then N no-op tasks enqueued from one client as fast as its API allows
(ffrtmp `submit_many`, Procrastinate `batch_defer_async`, PgQueuer `enqueue` with lists; 1,000 a call for the
peers), first enqueue → last completion (a `round` line). ffrtmp learns the end as compare_ffrtmp.py does
(`Client.wait` on the last job, then `stats` every 20 ms); the peers' task increments a Redis counter
(peerapps/benchtask.py, a private redis-server), polled every 5 ms, so counting loads no database. Each round
also gives the CPU the database's backends spent per job (`pg_cpu_ms_per_job`: psutil on the server processes
connected to that database; ffrtmp-sqlite has none). A `throughput` line per system holds the median.
Latency (`--singles`): on each system idle, single jobs one at a time; for ffrtmp submit→running is the client's
clock before `submit` → the attempt's start stamp read from the store (psycopg on PostgreSQL), as
compare_ffrtmp.py measures it; for the peers → the task body's first line (compare_peers.py).
The last line (`summary`) holds the ratios and whether each target was met. A system that fails to install or
run is an `error` line; the others go on.

    .venv-bench/bin/python scripts/bench/compare_pg.py [--jobs 10000] [--rounds 2] [--singles 200]
        [--systems ffrtmp-pg,ffrtmp-sqlite,procrastinate,pgqueuer] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--slots 8[,16,32]] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import compare_ffrtmp as cf
import compare_peers as cp
import psutil
from benchlib import emit, redis_server

from ffrtmp import __version__
from ffrtmp.local import LocalCluster

SYSTEMS = ("ffrtmp-pg", "ffrtmp-sqlite", "procrastinate", "pgqueuer")
PEERS = ("procrastinate", "pgqueuer")
BATCH = 1000
"""Tasks per batch call of the peers' enqueue APIs (as compare_peers.py does for RQ's enqueue_many)."""
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    """`url` with its database part replaced by `name` (a URL ends with /DATABASE, perhaps ?OPTIONS)."""
    base, _, options = url.partition("?")
    head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{head}/{name}" + (f"?{options}" if options else "")


@contextlib.contextmanager
def fresh_database(server: str, system: str) -> Iterator[tuple[str, str]]:
    """(url, name) of a database made for this round (bench_<system>_<random>), dropped at the end."""
    import psycopg

    name = f"bench_{system.replace('-', '_')}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name), name
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class BackendCpu:
    """CPU seconds the server's backends connected to one database have used (psutil; the server is local)."""

    def __init__(self, server: str, database: str | None) -> None:
        self.server, self.database = server, database
        self.before: dict[int, float] = {}

    def sample(self) -> dict[int, float]:
        if self.database is None:
            return {}
        import psycopg

        with psycopg.connect(self.server, autocommit=True, connect_timeout=10) as conn:
            pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                                   (self.database,))]
        cpu = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                cpu[pid] = sum(psutil.Process(pid).cpu_times()[:2])
        return cpu

    def start(self) -> None:
        self.before = self.sample()

    def seconds(self) -> float | None:
        """Since `start`, summed over the backends connected now (one that left meanwhile is not counted)."""
        if self.database is None:
            return None
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self.sample().items())


def others_running() -> list[str]:
    """What else loads the machine now: pytest runs (the CI's, other engineers') and other benchmark scripts."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] != os.getpid() and ("bin/pytest" in cmdline or "scripts/bench/" in cmdline):
            found.append(f"{proc.info['pid']}: {cmdline[:80]}")
    return found


# ---- ffrtmp ---------------------------------------------------------------------------------------------------


class Ffrtmp:
    """ffrtmp, a real master and 2 default workers (compare_ffrtmp.start), on PostgreSQL or on SQLite."""

    def __init__(self, system: str, root: Path, slots: int, server: str, profile: Path | None) -> None:
        self.system, self.root, self.slots, self.server, self.profile = system, root, slots, server, profile
        self.version = __version__
        self.store = "PostgreSQL (--db URL)" if system == "ffrtmp-pg" else "SQLite WAL (default)"

    @property
    def setting(self) -> str:
        db = " --db postgresql://postgres@127.0.0.1:5432/bench_ffrtmp_pg_XXXX" if self.system == "ffrtmp-pg" else ""
        return (f"`ffrtmp master{db}` + 2 `ffrtmp worker --slots {self.slots}` processes (default engines), "
                "CURVE on, client rate limits off")

    def tune(self, candidates: list[int], jobs: int, config: Callable[[], dict[str, Any]]) -> None:
        """A short run per slot count (`tune` lines, no warm-up), as compare_ffrtmp.tune_slots; keeps the fastest."""
        rates = {}
        for slots in candidates:
            self.slots = slots
            rates[slots] = self.throughput(jobs, 0, {**config(), "bench": "tune", "variant": f"slots:{slots}"}, False)
        self.slots = max(rates, key=lambda slots: rates[slots])

    @contextlib.contextmanager
    def session(self) -> Iterator[tuple[LocalCluster, str | None, str | None]]:
        """(cluster, database URL, database name) on a fresh store; the URL and name are None on SQLite."""
        with contextlib.ExitStack() as stack:
            url = name = None
            if self.system == "ffrtmp-pg":
                url, name = stack.enter_context(fresh_database(self.server, self.system))
            where = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=self.root)))
            cluster = stack.enter_context(cf.start(where, self.slots, db=url))
            yield cluster, url, name

    def throughput(self, jobs: int, warmup: int, config: dict[str, Any], profiled: bool) -> float:
        with self.session() as (cluster, _url, name):
            if warmup:
                enqueued, total = cf.run_jobs(cluster, warmup)
                emit({**config, "bench": "warmup", "jobs": warmup, "seconds": round(total, 3),
                      "jobs_per_s": round(warmup / total, 1)})
            pg_cpu = BackendCpu(self.server, name)
            pg_cpu.start()
            cpu, master_cpu = cf.worker_cpu_seconds(cluster), cf.master_cpu_seconds(cluster)
            with cf.profiled(cluster, self.profile if profiled else None, 600):
                enqueued, total = cf.run_jobs(cluster, jobs)
            cpu, master_cpu = cf.worker_cpu_seconds(cluster) - cpu, cf.master_cpu_seconds(cluster) - master_cpu
            pg_seconds = pg_cpu.seconds()
        emit({**config, "jobs": jobs, "seconds": round(total, 3), "jobs_per_s": round(jobs / total, 1),
              "enqueue_seconds": round(enqueued, 3), "enqueue_per_s": round(jobs / enqueued, 1),
              "master_cpu_ms_per_job": round(1000 * master_cpu / jobs, 4),
              "worker_cpu_ms_per_job": round(1000 * cpu / jobs, 4),
              "pg_cpu_ms_per_job": None if pg_seconds is None else round(1000 * pg_seconds / jobs, 4),
              "profiled": profiled, "completion_check": "Client.wait(last id), then stats every 20 ms"})
        if profiled and self.profile is not None:
            for process in ("master", "worker"):
                if (self.profile / f"{process}.txt").exists():
                    emit({"bench": "profile", "system": self.system, "process": process,
                          **cf.hot_spots(self.profile / f"{process}.txt")})
        return jobs / total

    def latency(self, singles: int, config: dict[str, Any]) -> float | None:
        """compare_ffrtmp's latency lines; returns the submit→running p50 (ms)."""
        records: list[dict[str, Any]] = []
        plain = cf.emit

        def keep(record: dict[str, Any]) -> None:
            records.append(record)
            plain(record)

        cf.emit = keep
        try:
            with self.session() as (cluster, url, _name):
                cf.latency(cluster, singles, config, system=self.system, db=url)
        finally:
            cf.emit = plain
        return next((r.get("p50_ms") for r in records if r.get("measure") == "submit_to_running"), None)


# ---- the peers ------------------------------------------------------------------------------------------------


class AsyncEnqueuer(cp.Enqueuer):
    """A peer whose client API is async: compare_peers' Enqueuer (`one(tag)`, `many(count)`), its calls run on a
    loop of its own, so compare_peers' wait_ready, latency and throughput drive it as they drive the others."""

    def __init__(self, system: str, url: str) -> None:  # not Enqueuer's: that one knows only the Redis peers
        self.system = system
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.open())
        self.one = lambda tag: self.loop.run_until_complete(self.defer([tag]))

    def many(self, count: int) -> None:
        for start in range(0, count, BATCH):
            self.loop.run_until_complete(self.defer([""] * min(BATCH, count - start)))

    async def open(self) -> None:
        raise NotImplementedError

    async def defer(self, tags: list[str]) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.aclose())
        self.loop.close()


class ProcrastinateEnqueuer(AsyncEnqueuer):
    """Defers by the task's name (`configure_task`) on an App of its own for this round's database."""

    async def open(self) -> None:
        from procrastinate import App, PsycopgConnector

        self.app = App(connector=PsycopgConnector(conninfo=self.url))
        await self.app.open_async()
        self.deferrer = self.app.configure_task("noop")

    async def defer(self, tags: list[str]) -> None:
        if len(tags) == 1:
            await self.deferrer.defer_async(tag=tags[0])
        else:
            await self.deferrer.batch_defer_async(*({"tag": tag} for tag in tags))

    async def aclose(self) -> None:
        await self.app.close_async()


class PgqueuerEnqueuer(AsyncEnqueuer):
    """`Queries.enqueue` on an asyncpg connection (PgQueuer's quick start); lists for a batch."""

    async def open(self) -> None:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.connection = await asyncpg.connect(self.url)
        self.queries = Queries(AsyncpgDriver(self.connection))

    async def defer(self, tags: list[str]) -> None:
        if len(tags) == 1:
            await self.queries.enqueue("noop", tags[0].encode() or None)
        else:
            await self.queries.enqueue(["noop"] * len(tags), [tag.encode() or None for tag in tags], [0] * len(tags))

    async def aclose(self) -> None:
        await self.connection.close()


def _procrastinate_argv(url: str, threads: int) -> list[list[str]]:
    return [[str(cp.BIN / "procrastinate"), "--app=procrastinate_app.app", "worker"] for _ in range(cp.WORKERS)]


def _pgqueuer_argv(url: str, threads: int) -> list[list[str]]:
    return [[str(cp.BIN / "pgq"), "run", "pgqueuer_app:main"] for _ in range(cp.WORKERS)]


cp.VARIANTS["procrastinate"] = {"default": cp.Variant(
    "2 `procrastinate --app=procrastinate_app.app worker` processes (defaults: concurrency 1, LISTEN/NOTIFY, "
    "psycopg 3 connector, jobs kept)", _procrastinate_argv)}
cp.VARIANTS["pgqueuer"] = {"default": cp.Variant(
    "2 `pgq run pgqueuer_app:main` processes (defaults: batch size 10, LISTEN/NOTIFY, asyncpg driver)",
    _pgqueuer_argv)}
SCHEMA: dict[str, Callable[[str], list[str]]] = {
    "procrastinate": lambda url: [str(cp.BIN / "procrastinate"), "--app=procrastinate_app.app", "schema", "--apply"],
    "pgqueuer": lambda url: [str(cp.BIN / "pgq"), "--pg-dsn", url, "install"],
}
ENQUEUERS: dict[str, type[AsyncEnqueuer]] = {"procrastinate": ProcrastinateEnqueuer, "pgqueuer": PgqueuerEnqueuer}


class Peer:
    """Procrastinate or PgQueuer: a fresh database, its schema installed by its CLI, 2 default workers."""

    def __init__(self, system: str, server: str, redis_url: str, log_dir: Path) -> None:
        self.system, self.server, self.redis_url, self.log_dir = system, server, redis_url, log_dir
        try:
            self.version = importlib.metadata.version(system)
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(f"{system} is not installed in {sys.prefix} (pip install -e '.[bench]')") from None
        self.setting = cp.VARIANTS[system]["default"].description
        self.store = "PostgreSQL"
        import redis

        self.conn = redis.Redis.from_url(redis_url)

    @contextlib.contextmanager
    def session(self) -> Iterator[tuple[AsyncEnqueuer, str]]:
        """(enqueuer, database name): the workers started, answering tasks (compare_peers.workers), warmed up."""
        with fresh_database(self.server, self.system) as (url, name):
            env = {**os.environ, "BENCH_PG_URL": url, "BENCH_REDIS_URL": self.redis_url, "PYTHONPATH": str(cp.APPS)}
            done = subprocess.run(SCHEMA[self.system](url), env=env, cwd=cp.APPS, capture_output=True, text=True,
                                  timeout=120, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{self.system} schema install failed: {(done.stdout + done.stderr)[-800:]}")
            os.environ.update(BENCH_PG_URL=url, BENCH_REDIS_URL=self.redis_url)  # the workers inherit them
            enqueuer = ENQUEUERS[self.system](self.system, url)
            try:
                with cp.workers(self.system, "default", 0, self.redis_url, self.log_dir, self.conn, enqueuer):
                    yield enqueuer, name
            finally:
                enqueuer.close()

    def throughput(self, jobs: int, warmup: int, config: dict[str, Any], profiled: bool) -> float:
        with self.session() as (enqueuer, name):
            if warmup:
                cp.throughput(self.conn, enqueuer, self.system, warmup, {**config, "bench": "warmup"})
            pg_cpu = BackendCpu(self.server, name)
            pg_cpu.start()
            records: list[dict[str, Any]] = []
            plain, cp.emit = cp.emit, records.append  # its line is emitted below, with the database's CPU
            try:
                rate = cp.throughput(self.conn, enqueuer, self.system, jobs, config)
            finally:
                cp.emit = plain
            pg_seconds = pg_cpu.seconds() or 0.0
        emit({**records[0], "pg_cpu_ms_per_job": round(1000 * pg_seconds / jobs, 4),
              "completion_check": "Redis counter (the task's INCR), polled every 5 ms"})
        return rate

    def latency(self, singles: int, config: dict[str, Any]) -> float | None:
        with self.session() as (enqueuer, _name):
            cp.latency(self.conn, enqueuer, self.system, singles, config)
        return None


# ---- the run --------------------------------------------------------------------------------------------------


def machine(args: argparse.Namespace, versions: dict[str, str]) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(args.pg_url, connect_timeout=10) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"bench": "machine", "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "postgresql": row[0] if row else None, "load_avg": [round(x, 2) for x in os.getloadavg()],
            "versions": versions, "command": " ".join(["python", *sys.argv]), "others_running": others_running()}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(rates: dict[str, list[float]], p50: float | None) -> dict[str, Any]:
    median = {system: statistics.median(values) for system, values in rates.items() if values}
    pg, sqlite = median.get("ffrtmp-pg"), median.get("ffrtmp-sqlite")
    peers = {system: rate for system, rate in median.items() if system in PEERS}
    best = max(peers, key=lambda system: peers[system]) if peers else None
    vs_peer, vs_sqlite = ratio(pg, peers.get(best) if best else None), ratio(pg, sqlite)

    def verdict(value: float | None, ok: bool) -> str:
        return "not measured" if value is None else "met" if ok else "missed"

    return {"bench": "summary", "jobs_per_s": {system: round(rate, 1) for system, rate in median.items()},
            "best_peer": best, "ffrtmp_pg_vs_best_peer": vs_peer, "ffrtmp_pg_vs_ffrtmp_sqlite": vs_sqlite,
            "ffrtmp_pg_submit_to_running_p50_ms": p50,
            "targets": {"ffrtmp_pg >= 2x best peer": verdict(vs_peer, (vs_peer or 0) >= 2),
                        "ffrtmp_pg >= 0.5x ffrtmp_sqlite": verdict(vs_sqlite, (vs_sqlite or 0) >= 0.5),
                        "ffrtmp_pg submit->running p50 <= 3 ms": verdict(p50, (p50 or 1e9) <= 3)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds, the systems in ABBA order")
    parser.add_argument("--singles", type=int, default=200, help="single jobs for submit->running (0: skip)")
    parser.add_argument("--warmup", type=int, default=None, help="tasks run before each measured round "
                        "(default: a tenth of --jobs)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="the PostgreSQL server (a fresh database is made on it "
                        "per system and round, and dropped)")
    parser.add_argument("--slots", default="8", help="slots per ffrtmp worker (compare_ffrtmp.py's default); a comma "
                        "list tries each with --tune-jobs jobs first (`tune` lines), for each store, and keeps the "
                        "fastest")
    parser.add_argument("--tune-jobs", type=int, default=5000)
    parser.add_argument("--redis-url", default=None, help="the peers' completion counter: this Redis (its "
                        "database is emptied!) instead of a private redis-server")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy ffrtmp-pg's master and a worker during "
                        "its first measured round (that round is marked `profiled`)")
    args = parser.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)} (known: {', '.join(SYSTEMS)})")
    warmup = args.jobs // 10 if args.warmup is None else args.warmup
    slots = [int(count) for count in args.slots.split(",") if count.strip()]
    needs_redis = any(s in PEERS for s in systems)
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ffrtmp-bench-pg-")))
        redis_url = stack.enter_context(redis_server(args.redis_url)) if needs_redis else ""
        benches: dict[str, Ffrtmp | Peer] = {}
        for system in systems:
            try:
                benches[system] = (Ffrtmp(system, root, slots[0], args.pg_url, args.profile)
                                   if system.startswith("ffrtmp") else Peer(system, args.pg_url, redis_url,
                                                                            root / "logs"))
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                emit({"bench": "error", "system": system, "error": f"{type(exc).__name__}: {exc}"[:500]})
        emit(machine(args, {system: bench.version for system, bench in benches.items()}))

        run = Run(benches, args, warmup)
        if len(slots) > 1:
            run.tune(systems, slots)
        rates = run.rounds(systems)
        p50 = run.latency(systems) if args.singles else None
        emit({**summarize(rates, p50), "jobs": args.jobs, "rounds": args.rounds,
              "others_running_at_end": others_running()})


class Run:
    """The rounds and the latency of the systems that have not failed yet (one that fails is not run again)."""

    def __init__(self, benches: dict[str, Ffrtmp | Peer], args: argparse.Namespace, warmup: int) -> None:
        self.benches, self.args, self.warmup = benches, args, warmup

    def config(self, system: str) -> dict[str, Any]:
        bench = self.benches[system]
        return {"system": system, "version": bench.version, "setting": bench.setting, "store": bench.store}

    def attempt(self, system: str, what: Callable[..., Any], *args: Any) -> Any:
        try:
            return what(*args)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            emit({"bench": "error", "system": system, "error": f"{type(exc).__name__}: {exc}"[:500]})
            del self.benches[system]
            return None

    def tune(self, systems: list[str], slots: list[int]) -> None:
        for system in systems:
            bench = self.benches.get(system)
            if isinstance(bench, Ffrtmp):
                self.attempt(system, bench.tune, slots, self.args.tune_jobs, functools.partial(self.config, system))

    def rounds(self, systems: list[str]) -> dict[str, list[float]]:
        """jobs/s per system and round, the systems in ABBA order; a `throughput` line (the median) for each."""
        rates: dict[str, list[float]] = {system: [] for system in self.benches}
        for round_ in range(1, self.args.rounds + 1):
            for system in systems if round_ % 2 else systems[::-1]:
                if system not in self.benches:
                    continue
                record = {**self.config(system), "bench": "round", "round": round_,
                          "others_running": others_running(), "load_avg_1m": round(os.getloadavg()[0], 2)}
                profiled = round_ == 1 and system == "ffrtmp-pg" and self.args.profile is not None
                rate = self.attempt(system, self.benches[system].throughput, self.args.jobs, self.warmup, record,
                                    profiled)
                if rate is not None:
                    rates[system].append(rate)
        for system, values in rates.items():
            if values and system in self.benches:
                emit({**self.config(system), "bench": "throughput", "jobs": self.args.jobs, "rounds": len(values),
                      "round_jobs_per_s": [round(v, 1) for v in values],
                      "jobs_per_s": round(statistics.median(values), 1)})
        return {system: values for system, values in rates.items() if system in self.benches}

    def latency(self, systems: list[str]) -> float | None:
        """Each system's latency lines; returns ffrtmp-pg's submit→running p50 (ms)."""
        p50 = None
        for system in systems:
            if system in self.benches:
                got = self.attempt(system, self.benches[system].latency, self.args.singles, self.config(system))
                if system == "ffrtmp-pg":
                    p50 = got
        return p50


if __name__ == "__main__":
    main()
