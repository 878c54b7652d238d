#!/usr/bin/env python3
"""One client floods the master at 10x its rate limit while another submits at a normal pace.

Prints JSON lines: the calm client's submit round-trip p50/p99 without and with the flood (goal: within
2x), and how many of the flood's requests were refused with "rate limited". A real master (process, CURVE
on, API keys with roles) and a worker for the submitted `null` jobs.

`--preauth N`: instead, N clients that hold only the master's public key (a fresh CURVE key each, no API
key) send as fast as they can: even ones BATCH frames of 1,000 requests, odd ones single requests (H4).
It adds the master's RSS growth and the dead nodes (goals: p99 within 2x, growth <= 50 MiB, 0 dead). Quiet and
flooded windows alternate `--rounds` times (the flooders reconnect each time), so that load from elsewhere on
the machine weighs on both measures alike.

    python scripts/bench/flood.py [--limit 50] [--seconds 5]
    python scripts/bench/flood.py --preauth 2 [--seconds 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.client import Client  # noqa: E402
from ffrtmp.local import LocalCluster, wait_for  # noqa: E402
from ffrtmp.protocol import Kind, decode  # noqa: E402


def flood(url: str, master_key: str, client_key: str, key: str, rate: float, seconds: float,
          out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Send `stats` requests at `rate` per second without waiting for replies; count the answers."""
    client = Client(url, master_key=master_key, client_key=client_key, api_key=key, timeout=10)
    sent = limited = ok = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            client.send_request("stats", {})
            sent += 1
        while (frame := client._socket.recv_nowait()) is not None:
            message = decode(frame)
            if message.kind is Kind.REPLY:
                ok += message.body["status"] == 200
                limited += message.body["status"] == 429
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while ok + limited < sent and time.monotonic() < deadline:
        frame = client._socket.recv(0.1)
        if frame is not None:
            message = decode(frame)
            ok += message.body.get("status") == 200
            limited += message.body.get("status") == 429
    client.close()
    out.put({"sent": sent, "ok": ok, "limited": limited})


def preauth_flood(url: str, master_key: str, batched: bool, on: Event, done: Event, nice: int,
                  out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Send requests with no API key, from a CURVE key of our own, as fast as ZeroMQ takes them, while `on`.

    Each time `on` is set it connects afresh (a new key); when `on` is cleared it closes, dropping what it
    had queued, so the master is quiet again at once. `nice`: an attacker runs on its own machine; sharing
    this one's cores, an un-niced flooder would measure how the OS shares the CPU, not how the master shares
    its work."""
    import zmq

    os.nice(nice)
    from ffrtmp.client import resolve_master_key
    from ffrtmp.protocol import encode
    from ffrtmp.security import KeyPair
    from ffrtmp.transport import DealerSocket

    items = [{"k": "request", "b": {"rid": str(i), "op": "list", "args": {}}} for i in range(1000)]
    frame = encode(Kind.BATCH, {"items": items}) if batched else \
        encode(Kind.REQUEST, {"rid": "1", "op": "list", "args": {}})
    sent = refused = replies = 0
    while not done.is_set():
        if not on.wait(0.05):
            continue
        socket = DealerSocket(url, resolve_master_key(master_key), KeyPair(*zmq.curve_keypair()))
        while on.is_set():
            for _ in range(100):
                if socket.send(frame):
                    sent += 1
                else:
                    refused += 1
            while socket.recv_nowait() is not None:
                replies += 1
        socket.close()
    out.put({"batched": batched, "frames_sent": sent, "requests_sent": sent * (1000 if batched else 1),
             "send_refused": refused, "replies": replies})


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads: ZeroMQ's I/O thread decrypts CURVE)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_preauth(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-preauth-") as root, LocalCluster(Path(root)) as cluster:
        cluster.start_master()
        calm_key = cluster.api_key("submit", "calm")
        cluster.start_worker("flood-worker", "--api-key", cluster.api_key("worker", "*"),
                             slots=4)
        admin = Client(cluster.url, master_key=str(cluster.master_dir / "master.key"), api_key=cluster.api_key(
            "admin", "ops"), client_key=str(cluster.root / "config" / "client.key_secret"))
        wait_for(lambda: [n for n in admin.nodes() if n["status"] == "online"], 30, "the worker to join")
        assert cluster.master is not None
        pid = cluster.master.pid
        master_key, client_key = str(cluster.master_dir / "master.key"), str(cluster.root / "config" /
                                                                             "client.key_secret")
        with Client(cluster.url, master_key=master_key, client_key=client_key, api_key=calm_key) as calm:
            calm_latencies(calm, 1.0)
            rss_before = rss_mib(pid)
            out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            on, done = multiprocessing.Event(), multiprocessing.Event()
            flooders = [multiprocessing.Process(target=preauth_flood, args=(
                cluster.url, master_key, args.shape == "batch" or (args.shape == "mixed" and i % 2 == 0),
                on, done, args.nice, out)) for i in range(args.preauth)]
            for proc in flooders:
                proc.start()
            peak = [rss_before]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.2):
                    peak[0] = max(peak[0], rss_mib(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            # Quiet and flooded windows alternate, so that other load on the machine falls on both alike.
            quiet: list[float] = []
            loaded: list[float] = []
            cpu = wall = 0.0
            window = args.seconds / args.rounds
            for _ in range(args.rounds):
                quiet += calm_latencies(calm, window)
                on.set()
                time.sleep(0.5)  # the flooders connect and fill their queues
                cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
                loaded += calm_latencies(calm, window)
                cpu += cpu_seconds(pid) - cpu_before
                wall += time.monotonic() - wall_before
                on.clear()
                time.sleep(0.5)  # what the master had queued is read and dropped
            master_cpu = cpu / wall
            done.set()
            for proc in flooders:
                proc.join()
            sampling.set()
            sampler.join()
            rss_peak = peak[0]
            counts = [out.get(timeout=10) for _ in flooders]
            began = time.monotonic()
            calm.submit("after", engine="null")
            after_s = time.monotonic() - began
            nodes = admin.nodes()
            admin.close()
            rss_after = rss_mib(pid)
        dead = (cluster.logs / "master.log").read_text().count(" silent for ")

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    print(json.dumps({"bench": "flood", "mode": "preauth", "nice": args.nice, "rounds": args.rounds,
                      "flooders": counts}))
    print(json.dumps({"bench": "flood", "mode": "preauth", "measure": "calm_submit_latency", "n_quiet": len(quiet),
                      "n_flood": len(loaded), "quiet_p50_ms": ms(percentile(quiet, 50)),
                      "quiet_p99_ms": ms(percentile(quiet, 99)), "flood_p50_ms": ms(percentile(loaded, 50)),
                      "flood_p99_ms": ms(percentile(loaded, 99)),
                      "p99_ratio": round(percentile(loaded, 99) / percentile(quiet, 99), 2),
                      "first_submit_after_flood_ms": ms(after_s),
                      "master_rss_mib": {"before": round(rss_before, 1), "peak_seen": round(rss_peak, 1),
                                         "after": round(rss_after, 1),
                                         "growth": round(max(rss_peak, rss_after) - rss_before, 1)},
                      "master_cpu_cores_during_flood": round(master_cpu, 2), "dead_nodes": dead,
                       "worker_status": [n.get("status") for n in nodes]}))


def calm_latencies(client: Client, seconds: float, interval: float = 0.02) -> list[float]:
    values = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        client.submit("calm", engine="null")
        values.append(time.perf_counter() - began)
        time.sleep(interval)
    return values


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=50.0, help="the flooding key's read limit per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--preauth", type=int, default=0, metavar="N",
                        help="N flooding clients with no API key (pre-auth mode)")
    parser.add_argument("--shape", choices=("mixed", "batch", "single"), default="mixed",
                        help="pre-auth frames: BATCHes of 1,000 requests, single requests, or half of each")
    parser.add_argument("--rounds", type=int, default=5,
                        help="pre-auth: quiet and flooded windows alternate this many times (--seconds each in all)")
    parser.add_argument("--nice", type=int, default=19,
                        help="niceness of the pre-auth flooders (0: they compete for this machine's CPU)")
    args = parser.parse_args()
    if args.preauth:
        run_preauth(args)
        return
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-flood-") as root:
        cluster = LocalCluster(Path(root), master_args=["--rate-limit", f"read={args.limit}/{args.limit}"])
        with cluster:
            cluster.start_master()
            flood_key, calm_key = cluster.api_key("read", "noisy"), cluster.api_key("submit", "calm")
            cluster.start_worker("flood-worker", "--api-key", cluster.api_key("worker", "*"),
                                 slots=4)
            master_key, client_key = str(cluster.master_dir / "master.key"), str(cluster.root / "config" /
                                                                                 "client.key_secret")
            with Client(cluster.url, master_key=master_key, client_key=client_key, api_key=calm_key) as calm:
                calm_latencies(calm, 1.0)  # warm up
                quiet = calm_latencies(calm, args.seconds)
                out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
                flooder = multiprocessing.Process(target=flood, args=(cluster.url, master_key, client_key, flood_key,
                                                                      10 * args.limit, args.seconds + 1, out))
                flooder.start()
                time.sleep(0.5)
                loaded = calm_latencies(calm, args.seconds)
                flooder.join()
                counts = out.get(timeout=10)

    def ms(value: float) -> float:
        return round(value * 1000, 2)

    print(json.dumps({"bench": "flood", "flood_rate_per_s": 10 * args.limit, "limit_per_s": args.limit, **counts}))
    print(json.dumps({"bench": "flood", "measure": "calm_submit_latency", "n_quiet": len(quiet),
                      "n_flood": len(loaded), "quiet_p50_ms": ms(percentile(quiet, 50)),
                      "quiet_p99_ms": ms(percentile(quiet, 99)), "flood_p50_ms": ms(percentile(loaded, 50)),
                      "flood_p99_ms": ms(percentile(loaded, 99)),
                      "p50_ratio": round(percentile(loaded, 50) / percentile(quiet, 50), 2),
                      "p99_ratio": round(percentile(loaded, 99) / percentile(quiet, 99), 2)}))


if __name__ == "__main__":
    main()
