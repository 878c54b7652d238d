#!/usr/bin/env python3
"""One client floods the master at 10x its rate limit while another submits at a normal pace.

Prints JSON lines: the calm client's submit round-trip p50/p99 without and with the flood (goal: within
2x), and how many of the flood's requests were refused with "rate limited". A real master (process, CURVE
on, API keys with roles) and a worker for the submitted `null` jobs.

    python scripts/bench/flood.py [--limit 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ffrtmp.client import Client  # noqa: E402
from ffrtmp.local import LocalCluster  # noqa: E402
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
            client._send_request("stats", {})
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-flood-") as root:
        cluster = LocalCluster(Path(root), master_args=["--rate-limit", f"read={args.limit}/{args.limit}"])
        with cluster:
            cluster.start_master()
            flood_key, calm_key = cluster.api_key("read", "noisy"), cluster.api_key("submit", "calm")
            cluster.start_worker("flood-worker", "--engines", "null", "--api-key", cluster.api_key("worker", "*"),
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
