#!/usr/bin/env python3
"""Log ingest on one master: 10 chatty jobs at once, a `--follow` client, and dispatch latency beside them.

A real master (process, CURVE on). The chatty jobs run on synthetic workers (processes speaking the worker
protocol through the real DEALER socket and the real LogShipper, so batching is what a worker does), each
writing --rate lines per second per job for --seconds; the line text carries its write time. One
`ffrtmp jobs logs --follow` process follows one of them; its printed lines give the write→print latency.
A real worker takes single `null` jobs meanwhile: submit→running latency with and without the log flood.
Prints JSON lines.

    python scripts/bench/logs.py [--jobs 10] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.local import LocalCluster, wait_for  # noqa: E402
from ffrtmp.protocol import Kind, decode, encode, unbatch  # noqa: E402
from ffrtmp.security import load_keypair, load_public_key  # noqa: E402
from ffrtmp.transport import DealerSocket  # noqa: E402
from ffrtmp.worker.logship import LogShipper  # noqa: E402


def chatty_worker(url: str, master_key: str, client_key: str, name: str, slots: int, rate: int,
                  seconds: float) -> None:
    """A worker that, for each job it gets, writes `rate` lines a second for `seconds`, then completes it."""
    sock = DealerSocket(url, load_public_key(master_key), load_keypair(Path(client_key)))
    shipper = LogShipper(sock.send)
    hello = {"name": name, "fingerprint": name, "version": "bench", "slots": slots, "engines": ["null"],
             "labels": {"role": "chatty"}, "running": []}
    sock.send(encode(Kind.HELLO, hello))
    jobs: dict[str, list[Any]] = {}  # job -> [attempt, started, lines written]
    next_beat = time.monotonic()
    while True:
        frame = sock.recv(0.002)
        while frame is not None:
            message = decode(frame)
            for one in unbatch(message) if message.kind is Kind.BATCH else [message]:  # JOBs come several a frame
                if one.kind is Kind.HEARTBEAT:  # the master acknowledges stored lines here
                    for job_id, attempt, seq in one.body.get("logs", []):
                        shipper.ack(job_id, attempt, seq)
                if one.kind is Kind.JOB:
                    jobs[one.body["job"]] = [one.body["attempt"], time.monotonic(), 0]
                    sock.send(encode(Kind.STARTED, {"job": one.body["job"], "attempt": one.body["attempt"],
                                                    "at": time.time()}))
            frame = sock.recv_nowait()
        now = time.monotonic()
        for job_id, state in list(jobs.items()):
            attempt, started, written = state
            due = min(int((now - started) * rate), int(seconds * rate))
            for seq in range(written + 1, due + 1):
                shipper.add(job_id, attempt, (seq, time.time(), "stderr", f"line {seq} t={time.time():.6f}"), now)
            state[2] = due
            if now - started >= seconds:
                shipper.flush_job(job_id, attempt)
                sock.send(encode(Kind.RESULT, {"job": job_id, "attempt": attempt, "status": "completed",
                                               "at": time.time(), "metrics": {"lines": due}}))
                del jobs[job_id]
        shipper.flush(now)
        if now >= next_beat:
            next_beat = now + 1.0
            sock.send(encode(Kind.HEARTBEAT, {"jobs": [{"job": j, "attempt": s[0], "frames": s[2]}
                                                        for j, s in jobs.items()]}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def dispatch_latencies(cluster: LocalCluster, count: int) -> list[float]:
    values = []
    with cluster.client() as client:
        for _ in range(count):
            job = client.wait(client.submit("probe", engine="null", labels={"role": "probe"}), poll=0.002)
            values.append(parse_time(job["started_at"]) - parse_time(job["created_at"]))
            time.sleep(0.02)
    return values


def follow_latencies(cluster: LocalCluster, job_id: str, out: list[float]) -> None:
    argv = [sys.executable, "-m", "ffrtmp", "jobs", "logs", job_id, "--follow", *cluster.connection_args()]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=cluster.env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " t=" in line:
                out.append(time.time() - float(line.rsplit("t=", 1)[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000, help="lines per second per job")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-logs-") as root, LocalCluster(Path(root)) as cluster:
        cluster.start_master()
        cluster.start_worker("probe", "--label", "role=probe")
        cluster.wait_for_nodes(["probe"])
        quiet = dispatch_latencies(cluster, args.probes)
        key, client_key = str(cluster.master_dir / "master.key"), str(cluster.root / "config" / "client.key_secret")
        workers = [multiprocessing.Process(target=chatty_worker, daemon=True,
                                           args=(cluster.url, key, client_key, f"chatty-{i}", args.jobs // 2 + 1,
                                                 args.rate, args.seconds)) for i in range(2)]
        for worker in workers:
            worker.start()
        cluster.wait_for_nodes(["probe", "chatty-0", "chatty-1"])
        with cluster.client() as client:
            ids = client.submit_many([{"scenario": "chatty", "engine": "null", "labels": {"role": "chatty"}}]
                                     * args.jobs)
            delays: list[float] = []
            follower = threading.Thread(target=follow_latencies, args=(cluster, ids[0], delays), daemon=True)
            follower.start()
            started = time.monotonic()
            loaded = dispatch_latencies(cluster, args.probes)
            wait_for(lambda: all(client.get(i)["status"] == "completed" for i in ids), 120 + args.seconds,
                     "the chatty jobs to end", 0.2)
            elapsed = time.monotonic() - started
            follower.join(30)
            stored = sum(len(client.logs(i)["lines"]) for i in ids)
        for worker in workers:
            worker.terminate()
    expected = int(args.jobs * args.rate * args.seconds)
    print(json.dumps({"bench": "logs", "measure": "ingest", "jobs": args.jobs, "lines_expected": expected,
                      "lines_stored": stored, "lines_per_s": round(stored / elapsed, 1),
                      "seconds": round(elapsed, 2)}))
    print(json.dumps({"bench": "logs", "measure": "follow_latency", "lines": len(delays),
                      "p50_ms": round(percentile(delays, 50) * 1000, 1),
                      "p99_ms": round(percentile(delays, 99) * 1000, 1)}))
    print(json.dumps({"bench": "logs", "measure": "dispatch_latency", "quiet_p50_ms":
                      round(percentile(quiet, 50) * 1000, 2), "quiet_p99_ms": round(percentile(quiet, 99) * 1000, 2),
                      "loaded_p50_ms": round(percentile(loaded, 50) * 1000, 2),
                      "loaded_p99_ms": round(percentile(loaded, 99) * 1000, 2),
                      "p50_ratio": round(statistics.median(loaded) / max(statistics.median(quiet), 1e-6), 2)}))


if __name__ == "__main__":
    main()
