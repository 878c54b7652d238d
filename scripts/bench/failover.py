#!/usr/bin/env python3
"""Failover: three masters on one PostgreSQL, three workers, N jobs, F faults of the leader or its database.

The database is a PRIVATE server this bench makes (private_pg.py: initdb into a temp dir, its own port), so
restarting it touches nobody else. N jobs (default 1,000; every --ffmpeg-every-th a tiny real FFmpeg
transcode, the rest `null`) are fed so that about --backlog are pending at any time. Every --interval seconds
the next fault, cycling:
  kill       SIGKILL the leader (restarted a moment later as a standby)
  stop       SIGSTOP the leader for --stop-hold seconds, then SIGCONT (it must step down, writing nothing)
  terminate  pg_terminate_backend of every connection the leader holds
  restart    restart the PostgreSQL server (once per run, at the middle fault)
Then one graceful stop (SIGTERM) of the leader. At the end one JSON line: lost, completed_twice, failed,
stale_writes_refused (masters' "a write was refused" log lines), per fault kind the fault → first dispatch
(p50/max), the SIGTERM handover, and after the restart and each killed backend the time until throughput
(completions in a --window s window) is back to >= 95 % of its rate in the window before the fault.

    python scripts/bench/failover.py [--jobs 1000] [--faults 20] [--stop-hold 20s] [--interval 8]
    python scripts/bench/failover.py --jobs 200 --faults 6 --stop-hold 4s       # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from benchlib import Children, emit, free_port  # noqa: E402
from private_pg import PrivatePostgres, private_postgres  # noqa: E402

from ffrtmp.client import Client  # noqa: E402
from ffrtmp.errors import FfrtmpError  # noqa: E402
from ffrtmp.security import write_certificates  # noqa: E402
from ffrtmp.units import parse_duration  # noqa: E402

MASTERS = ("m1", "m2", "m3")
WORKERS = ("w1", "w2", "w3")
CYCLE = ("kill", "stop", "terminate")
TINY = {"resolution": "160x120", "duration": 1, "codec": "h264", "fps": 25, "preset": "ultrafast"}
RECOVERED = 0.95


class Cluster:
    """The masters and workers as child processes, and the database they share."""

    def __init__(self, root: Path, pg: PrivatePostgres, url: str) -> None:
        self.root = root
        self.pg = pg
        self.url = url
        self.keys = root / "keys"
        write_certificates(self.keys, "master")
        write_certificates(root / "config", "client")
        self.ports = {name: free_port() for name in MASTERS}
        self.children = Children(root / "logs")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {"FFRTMP_CONFIG_DIR": str(root / "config"), "PYTHONUNBUFFERED": "1"}
        for name in ("FFRTMP_MASTER", "FFRTMP_MASTER_KEY", "FFRTMP_DATA_DIR"):
            os.environ.pop(name, None)

    @property
    def addresses(self) -> str:
        return ",".join(f"tcp://127.0.0.1:{self.ports[name]}" for name in MASTERS)

    def start_master(self, name: str) -> None:
        data = self.root / name
        with contextlib.suppress(FileNotFoundError):
            (data / "master.json").unlink()
        self.procs[name] = self.children.start(name, [
            sys.executable, "-m", "ffrtmp", "master", "--name", name, "--port", str(self.ports[name]),
            "--bind", "127.0.0.1", "--data-dir", str(data), "--db", self.url, "--cert", str(self.keys / "master.key"),
            "--key", str(self.keys / "master.key_secret"), "--metrics", "--metrics-port", "0", "--api-port", "0"],
            env=self.env, cwd=self.root)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, ValueError):
                if json.loads((data / "master.json").read_text()).get("pid") == self.procs[name].pid:
                    return
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"master {name} did not start: {self.children.tail(name)}")
            time.sleep(0.05)

    def start_worker(self, name: str) -> None:
        self.children.start(name, [
            sys.executable, "-m", "ffrtmp", "worker", "--master", self.addresses, "--master-key",
            str(self.keys / "master.key"), "--name", name, "--work-dir", str(self.root / f"work-{name}"),
            "--slots", "2", "--metrics-port", "0", "--engines", "null,ffmpeg"], env=self.env, cwd=self.root)

    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.addresses, master_key=str(self.keys / "master.key"), timeout=timeout,
                      client_key=self.root / "config" / "client.key_secret")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return list(conn.execute(sql, args).fetchall())

    def leader(self) -> tuple[str, int] | None:
        """The live lease's (holder, term), read from the database; None while nobody leads (or it is down)."""
        with contextlib.suppress(Exception):
            rows = self.query("SELECT holder, term FROM leader_lease WHERE expires_at > clock_timestamp()")
            if rows:
                return str(rows[0][0]), int(rows[0][1])
        return None

    def wait_leader(self, other_than: str | None = None, timeout: float = 60.0) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leader()
            if found is not None and found[0] != other_than:
                return found
            time.sleep(0.02)
        raise RuntimeError(f"no leader (other than {other_than}) within {timeout:g}s")

    def backend_pids(self, name: str) -> list[int]:
        """The server processes serving `name`'s connections: its sockets' local ports against pg_stat_activity."""
        ports = {c.laddr.port for c in psutil.Process(self.procs[name].pid).net_connections("tcp")
                 if c.raddr and c.raddr.port == self.pg.port}
        rows = self.query("SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()")
        return [int(pid) for pid, port in rows if port in ports]

    def said(self, words: str) -> int:
        """How many times the masters' logs (every run of each) say `words`."""
        return sum((self.root / "logs" / f"{name}.log").read_text(errors="replace").count(words) for name in MASTERS)


class LateSubmit(threading.Thread):
    """A submit sent to the frozen leader alone: once resumed, its write must be refused (fenced) and the
    request sent on to the new leader, which stores the job once."""

    def __init__(self, cluster: Cluster, leader: str, hold: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.leader, self.hold = cluster, leader, hold
        self.id: str | None = None
        self.error: str | None = None

    def run(self) -> None:
        address = f"tcp://127.0.0.1:{self.cluster.ports[self.leader]}"
        try:
            with Client(address, master_key=str(self.cluster.keys / "master.key"), timeout=self.hold + 15,
                        client_key=self.cluster.root / "config" / "client.key_secret") as client:
                self.id = client.submit("failover-late", engine="null")
        except FfrtmpError as exc:
            self.error = str(exc)


class Feeder(threading.Thread):
    """Submits N jobs in small batches, keeping about `backlog` pending; records every id it got."""

    def __init__(self, cluster: Cluster, jobs: int, backlog: int, ffmpeg_every: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.jobs, self.backlog, self.ffmpeg_every = cluster, jobs, backlog, ffmpeg_every
        self.rate = rate
        """Jobs per second at most (0: as fast as the backlog allows), so the jobs last through every fault."""
        self.ids: list[str] = []
        self.errors = 0
        self.done = threading.Event()
        self.finished_at = float("inf")
        """When the last job was submitted (throughput after that falls by itself: no recovery to measure)."""

    def spec(self, index: int) -> dict[str, Any]:
        if self.ffmpeg_every and index % self.ffmpeg_every == 0:
            return {"scenario": "failover-ffmpeg", "engine": "ffmpeg", **TINY}
        return {"scenario": "failover-null", "engine": "null"}

    def run(self) -> None:
        began = time.monotonic()
        with self.cluster.client(timeout=5.0) as client:
            while len(self.ids) < self.jobs:
                if self.rate and len(self.ids) >= (time.monotonic() - began) * self.rate:
                    time.sleep(0.05)
                    continue
                try:
                    pending = int(self.cluster.query("SELECT count(*) FROM jobs WHERE status = 'pending'")[0][0])
                except Exception:
                    pending = self.backlog  # the database is down: wait
                if pending >= self.backlog:
                    time.sleep(0.05)
                    continue
                batch = [self.spec(len(self.ids) + i) for i in range(min(10, self.jobs - len(self.ids)))]
                key = f"feed-{len(self.ids)}"  # a batch retried after a failure is created once
                while True:
                    try:
                        self.ids += list(client.submit_many(batch, key=key))
                        break
                    except FfrtmpError:
                        self.errors += 1
                        time.sleep(0.2)
        self.finished_at = time.time()
        self.done.set()


def first_dispatch_after(cluster: Cluster, at: float, timeout: float = 30.0) -> float | None:
    """Seconds from `at` to the first job assigned after it (None: none within `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            rows = cluster.query("SELECT min(at) FROM history WHERE status = 'assigned' AND at > %s", (at,))
            if rows and rows[0][0] is not None:
                return float(rows[0][0]) - at
        time.sleep(0.05)
    return None


def completed(cluster: Cluster) -> int:
    with contextlib.suppress(Exception):
        return int(cluster.query("SELECT count(*) FROM jobs WHERE status = 'completed'")[0][0])
    return 0


def pending(cluster: Cluster) -> int:
    with contextlib.suppress(Exception):
        return int(cluster.query("SELECT count(*) FROM jobs WHERE status = 'pending'")[0][0])
    return 0


def recovery(completions: list[float], fault: float, window: float, horizon: float = 30.0) -> float | None:
    """Seconds from `fault` until a `window`-long span completes >= 95 % of the jobs of the window before it
    (None: not within `horizon`)."""
    before = sum(1 for t in completions if fault - window <= t < fault)
    if before == 0:
        return None
    start = fault
    while start <= fault + horizon:
        if sum(1 for t in completions if start <= t < start + window) >= RECOVERED * before:
            return round(start - fault, 2)
        start += 0.1
    return None


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": round(statistics.median(values), 2), "max_s": round(max(values), 2),
            "values_s": [round(v, 2) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--stop-hold", default="20s", help="how long the leader stays SIGSTOPped")
    parser.add_argument("--interval", type=float, default=8.0, help="seconds of steady running between faults")
    parser.add_argument("--window", type=float, default=3.0, help="throughput window, seconds")
    parser.add_argument("--backlog", type=int, default=30, help="pending jobs at most, fed as they are taken")
    parser.add_argument("--rate", type=float, help="jobs submitted per second at most (default: the jobs spread "
                        "over the planned faults, so there is work to dispatch at each)")
    parser.add_argument("--ffmpeg-every", type=int, default=4, help="every Nth job a real FFmpeg one (0: none)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up waiting for the jobs after this")
    parser.add_argument("--keep-logs", type=Path, help="copy the masters' and workers' logs here")
    args = parser.parse_args()
    hold = parse_duration(args.stop_hold)

    with private_postgres() as pg, tempfile.TemporaryDirectory(prefix="ffrtmp-bench-failover-") as tmp:
        cluster = Cluster(Path(tmp), pg, pg.create_database("failover"))
        try:
            result = run(cluster, args, hold)
        finally:
            if args.keep_logs:
                shutil.copytree(cluster.root / "logs", args.keep_logs, dirs_exist_ok=True)
            for proc in cluster.procs.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
            cluster.children.stop()
    emit(result)


def inflict(cluster: Cluster, kind: str, leader: str) -> None:
    if kind == "kill":
        os.killpg(cluster.procs[leader].pid, signal.SIGKILL)
        cluster.procs[leader].wait(10)
    elif kind == "stop":
        os.killpg(cluster.procs[leader].pid, signal.SIGSTOP)
    elif kind == "terminate":
        pids = cluster.backend_pids(leader)
        cluster.query("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    else:
        cluster.pg.restart()


def graceful_handover(cluster: Cluster) -> float:
    """SIGTERM of the leader → another master holds the lease (seconds); the stopped one comes back."""
    leader, _ = cluster.wait_leader()
    stopped = time.monotonic()
    cluster.procs[leader].send_signal(signal.SIGTERM)
    cluster.wait_leader(other_than=leader)
    handover = time.monotonic() - stopped
    cluster.procs[leader].wait(30)
    cluster.start_master(leader)
    return handover


def planned_rate(args: argparse.Namespace, hold: float) -> float:
    """Jobs per second that spread the jobs over the run's planned faults (a fault's dispatch wait: ~3 s)."""
    stops = sum(1 for index in range(args.faults) if CYCLE[index % len(CYCLE)] == "stop")
    seconds = args.interval * (args.faults + 2) + 5.0 * args.faults + hold * stops
    return float(args.rate) if args.rate is not None else args.jobs / max(seconds, 1.0)


def run(cluster: Cluster, args: argparse.Namespace, hold: float) -> dict[str, Any]:
    for name in MASTERS:
        cluster.start_master(name)
    for name in WORKERS:
        cluster.start_worker(name)
    feeder = Feeder(cluster, args.jobs, args.backlog, args.ffmpeg_every, planned_rate(args, hold))
    feeder.start()
    started = time.time()
    dispatch: dict[str, list[float]] = {kind: [] for kind in (*CYCLE, "restart")}
    faults: list[tuple[str, float]] = []
    idle_faults = 0
    backlog_at_faults: list[int] = []
    late: list[LateSubmit] = []
    restart_at = args.faults // 2
    warm = min(args.backlog, max(1, args.jobs // 10))
    deadline = time.monotonic() + 120
    while completed(cluster) < warm:  # every worker joined and made its test source
        if time.monotonic() > deadline:
            raise RuntimeError(f"{warm} jobs did not complete within 120 s: {cluster.children.tail('w1')}")
        time.sleep(0.1)
    baseline_from = time.time()
    time.sleep(args.interval)  # the baseline before the first fault
    for index in range(args.faults):
        kind = "restart" if index == restart_at else CYCLE[index % len(CYCLE)]
        leader, _ = cluster.wait_leader()
        waiting = pending(cluster)
        backlog_at_faults.append(waiting)
        if waiting == 0:
            idle_faults += 1  # nothing to dispatch: the first dispatch waits for the next submit (and its failover)
        at = time.time()
        inflict(cluster, kind, leader)
        faults.append((kind, at))
        resume: threading.Timer | None = None
        if kind == "stop":  # resumed after the hold, whatever the measurement below waits for
            resume = threading.Timer(hold, os.killpg, (cluster.procs[leader].pid, signal.SIGCONT))
            resume.start()
            late.append(LateSubmit(cluster, leader, hold))
            late[-1].start()
        took = first_dispatch_after(cluster, at)
        if took is not None:
            dispatch[kind].append(took)
        if kind == "kill":
            cluster.start_master(leader)  # back, as a standby
        if resume is not None:
            resume.join()
        time.sleep(args.interval)

    term = cluster.wait_leader()[1]
    handover = graceful_handover(cluster)

    feeder.done.wait(args.timeout)
    for one in late:
        one.join(hold + 30)
    feeder.ids += [one.id for one in late if one.id is not None]
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            left = cluster.query("SELECT count(*) FROM jobs WHERE status IN ('pending', 'assigned', 'running')")
            if int(left[0][0]) == 0:
                break
        time.sleep(0.5)
    elapsed = time.time() - started

    rows = cluster.query(
        "SELECT j.id, j.status, j.attempts,"
        " (SELECT count(*) FROM history h WHERE h.job_seq = j.seq AND h.status = 'completed'),"
        " (SELECT count(*) FROM attempts a WHERE a.job_seq = j.seq AND a.status = 'completed') FROM jobs j")
    stored = {row[0]: row for row in rows}
    completions = [float(r[0]) for r in cluster.query("SELECT at FROM history WHERE status = 'completed'")]
    lost = [job for job in feeder.ids if job not in stored or stored[job][1] != "completed"]
    twice = [job for job, row in stored.items() if row[3] > 1 or row[4] > 1]
    # Judged only up to the next fault (or the feed's end): what comes after is that fault's, not this one's.
    ends = [at for _, at in faults[1:]] + [feeder.finished_at]
    after = {kind: [recovery(completions, at, args.window, horizon=min(30.0, end - at - args.window))
                    for (k, at), end in zip(faults, ends, strict=True) if k == kind]
             for kind in ("restart", "terminate")}
    return {
        "bench": "failover", "masters": len(MASTERS), "workers": len(WORKERS), "jobs": len(feeder.ids),
        "jobs_stored": len(stored), "faults": len(faults), "faults_by_kind": {k: sum(1 for f, _ in faults if f == k)
                                                                           for k in dispatch},
        "stop_hold_s": hold, "feed_jobs_per_s": round(feeder.rate, 2),
        "lost": len(lost), "lost_ids": lost[:10], "completed_twice": len(twice),
        "failed": sum(1 for row in stored.values() if row[1] == "failed"),
        "retried": sum(1 for row in stored.values() if row[2] > 1),
        "stale_writes_refused": cluster.said("a write was refused"), "step_downs": cluster.said("no longer leads"),
        "late_submits_to_a_frozen_leader": len(late), "late_submits_failed": [one.error for one in late if one.error],
        "submit_errors_retried": feeder.errors,
        "faults_after_the_feed_ended": sum(1 for _, at in faults if at > feeder.finished_at),
        "first_dispatch_after": {kind: spread(values) for kind, values in dispatch.items()},
        "sigterm_handover_s": round(handover, 2), "final_term": cluster.wait_leader()[1], "term_before_sigterm": term,
        "throughput_recovery_s": after, "recovery_target": f">= {RECOVERED:.0%} of the window before, --window "
                                                          f"{args.window:g}s",
        "faults_with_nothing_pending": idle_faults, "pending_at_each_fault": backlog_at_faults,
        "baseline_jobs_per_s": round(sum(1 for t in completions if baseline_from <= t < faults[0][1])
                                     / max(faults[0][1] - baseline_from, 1e-9), 2) if faults else None,
        "elapsed_s": round(elapsed, 1),
    }


if __name__ == "__main__":
    main()
