#!/usr/bin/env python3
"""Scale: one master, 1,000 simulated workers heartbeating, and a store holding 1,000,000 jobs.

The store is built first (Store API inserts in big transactions, then SQL sets 96 % completed, 3 % failed,
1 % canceled, spread over 30 days) and the master starts on it (CURVE on). Simulated workers are plain
DEALERs (ffrtmp.transport.DealerSocket) speaking the worker protocol (HELLO, then HEARTBEAT at the interval
the master's WELCOME gives, default 1 s), spread over a few processes and joining over a few seconds.
Once all are online, for --seconds:
  * the master process's CPU % (of one core) and RSS, sampled every second with psutil;
  * heartbeat handling latency: a simulated worker sending HEARTBEAT → receiving the master's HEARTBEAT reply;
  * false dead-node detections: nodes the master marked offline (`nodes list` at the end, and "silent for"
    lines in its log) — every simulated worker keeps heartbeating, so any is false.
Then, with the workers still heartbeating: `jobs list` (limit 50; no filter, `--status completed`,
`--status failed`) p50 over --list-calls calls each, plus `nodes list` and `stats`.

    python scripts/bench/scale.py [--workers 1000] [--procs 4] [--seconds 180] [--store-jobs 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import multiprocessing
import random
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil
from benchlib import emit, summary

from ffrtmp import __version__
from ffrtmp.jobspec import validate_submission
from ffrtmp.local import LocalCluster, wait_for
from ffrtmp.master.store import SqliteStore

HELLO_RETRY = 2.0
RAMP_SECONDS = 5.0
RESOURCES = {"cpu_percent": 12.5, "cpu_count": 16, "load1": 1.25, "memory_total": 68719476736,
             "memory_available": 51539607552, "memory_percent": 25.0, "disk_free": 500107862016,
             "disk_percent": 41.2, "gpus": []}
"""What a real worker's ResourceSampler reports, so heartbeats have their real size."""


# ---- the store -------------------------------------------------------------------------------------------

def build_store(db: Path, count: int) -> float:
    """`count` finished jobs in a fresh store at `db`; returns the seconds it took."""
    began = time.perf_counter()
    store = SqliteStore(db)
    spec = validate_submission({"scenario": "archive", "engine": "ffmpeg", "resolution": "1280x720",
                                "bitrate": "2500k", "duration": 60, "output": "out/archive.mp4"})
    span, now, chunk = 30 * 86400.0, time.time(), 50_000
    for start in range(0, count, chunk):
        with store.transaction():
            store.insert_jobs([spec] * min(chunk, count - start), now - span + span * start / count, 3)
    with store.transaction():
        store.conn.execute("UPDATE jobs SET status = 'completed', attempts = 1, node = printf('node-%03d', seq % 1000),"
                           " progress = 1.0, started_at = created_at + 0.5, finished_at = created_at + 61,"
                           " metrics = '{\"wall_seconds\":60.5,\"avg_fps\":29.8}'")
        store.conn.execute("UPDATE jobs SET status = 'failed', progress = NULL, failure = 'encoder_error',"
                           " error = 'ffmpeg exited with 1: Conversion failed!' WHERE seq % 33 = 0")
        store.conn.execute("UPDATE jobs SET status = 'canceled', progress = NULL, failure = 'canceled',"
                           " error = 'canceled by user' WHERE seq % 100 = 1")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - began


# ---- simulated workers (each process runs many) --------------------------------------------------------

class Simulator:
    """Many simulated workers in one process: one DEALER each, one poll loop for all."""

    def __init__(self, names: list[str], url: str, master_key: str, client_secret: str, seed: int) -> None:
        import zmq

        from ffrtmp.protocol import Kind, encode
        from ffrtmp.security import load_keypair, load_public_key
        from ffrtmp.transport import DealerSocket

        self.rng = random.Random(seed)
        self.context = zmq.Context()
        server_key, keys = load_public_key(master_key), load_keypair(Path(client_secret))
        self.socks = [DealerSocket(url, server_key, keys, context=self.context) for _ in names]
        self.index = {sock.socket: i for i, sock in enumerate(self.socks)}
        self.poller = zmq.Poller()
        for sock in self.socks:
            self.poller.register(sock.socket, zmq.POLLIN)
        self.hellos = [encode(Kind.HELLO, {"name": name, "fingerprint": f"sim{i:05d}", "version": __version__,
                                           "slots": 4, "engines": ["ffmpeg"], "encoders": {}, "labels": {"sim": "1"},
                                           "resources": RESOURCES, "running": []}) for i, name in enumerate(names)]
        self.heartbeat = encode(Kind.HEARTBEAT, {"jobs": [], "resources": RESOURCES, "draining": False})
        self.welcomed = [False] * len(self.socks)
        self.sent: list[deque[float]] = [deque() for _ in self.socks]
        self.samples: list[tuple[float, float]] = []
        self.counts = {"resync": 0, "refused": 0, "jobs": 0, "other": 0, "welcomes": 0}
        self.errors: list[str] = []
        self.interval = 1.0
        start = time.monotonic()
        self.due = [(start + RAMP_SECONDS * i / len(self.socks), i, "hello") for i in range(len(self.socks))]
        heapq.heapify(self.due)

    def send_due(self, now: float) -> None:
        while self.due and self.due[0][0] <= now:
            _, i, what = heapq.heappop(self.due)
            if what == "hello":
                if not self.welcomed[i]:
                    self.socks[i].send(self.hellos[i])
                    heapq.heappush(self.due, (now + HELLO_RETRY, i, "hello"))
            elif self.welcomed[i]:
                self.sent[i].append(time.monotonic())
                self.socks[i].send(self.heartbeat)
                heapq.heappush(self.due, (now + self.interval, i, "beat"))

    def on_frame(self, i: int, frame: bytes, arrived: float) -> None:
        from ffrtmp.protocol import Kind, decode

        message = decode(frame)
        if message.kind is Kind.HEARTBEAT and self.sent[i]:
            began = self.sent[i].popleft()
            self.samples.append((time.time() - (arrived - began), arrived - began))
        elif message.kind is Kind.WELCOME:
            self.counts["welcomes"] += 1
            self.welcomed[i] = True
            self.interval = float(message.body["heartbeat_interval"])
            heapq.heappush(self.due, (arrived + self.rng.uniform(0, self.interval), i, "beat"))
        elif message.kind is Kind.RESYNC:
            self.counts["resync"] += 1
            self.welcomed[i] = False
            self.sent[i].clear()
            heapq.heappush(self.due, (arrived, i, "hello"))
        elif message.kind is Kind.REFUSED:
            self.counts["refused"] += 1
            if len(self.errors) < 5:
                self.errors.append(str(message.body.get("error")))
        else:
            self.counts["jobs" if message.kind is Kind.JOB else "other"] += 1

    def run(self, stop_file: Path) -> None:
        import zmq

        next_stop_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_stop_check:
                next_stop_check = now + 0.5
                if stop_file.exists():
                    break
            self.send_due(now)
            timeout = max(0.0, min(self.due[0][0] if self.due else now + 0.5, next_stop_check) - time.monotonic())
            for sock, _ in self.poller.poll(int(timeout * 1000)):
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_frame(self.index[sock], frame, time.monotonic())

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.context.term()


def simulate(names: list[str], url: str, master_key: str, client_secret: str, stop_file: str, result_file: str,
             seed: int) -> None:
    """Run `names` as workers until `stop_file` exists; write what was measured to `result_file`."""
    sim = Simulator(names, url, master_key, client_secret, seed)
    try:
        sim.run(Path(stop_file))
    finally:
        sim.close()
        Path(result_file).write_text(json.dumps({"samples": sim.samples, "counts": sim.counts, "errors": sim.errors}))


# ---- the run --------------------------------------------------------------------------------------------

def online(client: Any) -> tuple[int, int]:
    nodes = [n for n in client.nodes() if n["name"].startswith("sim-")]
    return sum(n["status"] == "online" for n in nodes), sum(n["status"] == "offline" for n in nodes)


def timed(call: Any, count: int) -> list[float]:
    values = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        values.append(time.perf_counter() - began)
    return values


def sample_master(proc: psutil.Process, seconds: float) -> tuple[list[float], list[float]]:
    """CPU % (100 = one core) and RSS MiB, once a second for `seconds`."""
    cpu, rss = [], []
    proc.cpu_percent(None)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)
        cpu.append(proc.cpu_percent(None))
        rss.append(proc.memory_info().rss / 2**20)
    return cpu, rss


def main() -> None:  # noqa: C901 (one straight sequence of steps)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4, help="processes the simulated workers are spread over")
    parser.add_argument("--seconds", type=float, default=180.0, help="measured time once all workers are online")
    parser.add_argument("--store-jobs", type=int, default=1_000_000)
    parser.add_argument("--list-calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-scale-") as tmp:
        root = Path(tmp)
        cluster = LocalCluster(root / "cluster")
        build_seconds = build_store(cluster.master_dir / "master.db", args.store_jobs)
        emit({"bench": "store_build", "jobs": args.store_jobs, "seconds": round(build_seconds, 1),
              "db_mib": round((cluster.master_dir / "master.db").stat().st_size / 2**20, 1)})
        with cluster:
            cluster.start_master()
            assert cluster.master is not None
            master = psutil.Process(cluster.master.pid)
            stop_file, spawn = root / "stop", multiprocessing.get_context("spawn")
            names = [f"sim-{i:04d}" for i in range(args.workers)]
            shares = [names[p::args.procs] for p in range(args.procs)]
            results = [root / f"sim-{p}.json" for p in range(args.procs)]
            sims = [spawn.Process(target=simulate, args=(share, cluster.url, str(cluster.master_dir / "master.key"),
                                                          str(root / "cluster" / "config" / "client.key_secret"),
                                                          str(stop_file), str(result), p))
                    for p, (share, result) in enumerate(zip(shares, results, strict=True))]
            joined_at = time.monotonic()
            for sim in sims:
                sim.start()
            try:
                with cluster.client(timeout=60) as client:
                    join_cpu = [master.cpu_percent(None)]
                    wait_for(lambda: online(client)[0] >= args.workers, 180, f"{args.workers} workers online", 1.0)
                    join_seconds = time.monotonic() - joined_at
                    join_cpu = [master.cpu_percent(None)]
                    window_start = time.time()
                    cpu, rss = sample_master(master, args.seconds)
                    window_end = time.time()
                    nodes_list = timed(client.nodes, 5)
                    up, down = online(client)
                    listing = {name: timed(lambda status=status: client.list(status=status, limit=50),
                                           args.list_calls)
                               for name, status in (("all", None), ("completed", "completed"), ("failed", "failed"))}
                    stats_calls = timed(client.stats, 3)
            finally:
                stop_file.touch()
                for sim in sims:
                    sim.join(60)
                    if sim.is_alive():
                        sim.kill()
            silent = sum("silent for" in line for line in cluster.log_tail("master", 10**7).splitlines())
        latencies, counts, errors = [], {"resync": 0, "refused": 0, "jobs": 0}, []
        for result in results:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(result.read_text())
                latencies += [lat for at, lat in data["samples"] if window_start <= at <= window_end]
                for key in counts:
                    counts[key] += data["counts"][key]
                errors += data["errors"]
    emit({"bench": "scale", "system": "ffrtmp", "workers": args.workers, "procs": args.procs,
          "seconds": args.seconds, "store_jobs": args.store_jobs, "join_seconds": round(join_seconds, 1),
          "join_master_cpu_pct": round(join_cpu[-1], 1),
          "master_cpu_mean_pct": round(sum(cpu) / len(cpu), 1), "master_cpu_p95_pct": round(sorted(cpu)[
              int(0.95 * (len(cpu) - 1))], 1), "master_cpu_max_pct": round(max(cpu), 1),
          "master_rss_max_mib": round(max(rss), 1), "master_rss_end_mib": round(rss[-1], 1),
          "heartbeats": len(latencies), "heartbeats_expected": int(args.workers * args.seconds),
          **{f"heartbeat_{k}": v for k, v in summary(latencies).items() if k != "n"},
          "false_dead": max(silent, down), "silent_log_lines": silent, "offline_at_end": down, "online_at_end": up,
          **counts, "errors": errors[:3]})
    for name, values in listing.items():
        emit({"bench": "jobs_list", "system": "ffrtmp", "store_jobs": args.store_jobs, "filter": name, "limit": 50,
              **summary(values)})
    emit({"bench": "nodes_list", "system": "ffrtmp", "nodes": args.workers, **summary(nodes_list)})
    emit({"bench": "stats_call", "system": "ffrtmp", "store_jobs": args.store_jobs, **summary(stats_calls)})


if __name__ == "__main__":
    main()
