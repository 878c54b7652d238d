#!/usr/bin/env python3
"""The master's HTTP API under load: submits per second over keep-alive HTTPS, and what idle connections cost.

1. `--clients` processes (default 4), each one keep-alive HTTPS connection, POST single `null` jobs to
   /api/jobs (curl, or `--client python`) for about `--seconds`: submits/s and the round trip's p50/p99
   (targets: >= 2,000/s, p99 <= 20 ms).
   Beside them a ZeroMQ client pings the master's loop; its p99 calm and under the HTTP load (target: <= 2x).
2. `--idle` keep-alive connections (default 10,000), each after one GET /health, held open: the master's RSS
   growth (target: <= 100 MiB) and whether it still answers.

A real master process (CURVE on), submit rate limits off and the pre-auth budget raised (every client here
is one address). Prints JSON lines.

    python scripts/bench/http_api.py [--seconds 10] [--clients 4] [--idle 10000] [--plain]

`--plain`: the master with --no-api-tls, plain HTTP on loopback, as it runs behind a TLS-terminating proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402
from benchlib import emit, free_port, summary  # noqa: E402

from ffrtmp.local import LocalCluster  # noqa: E402

JOB = json.dumps({"scenario": "null", "engine": "ffmpeg", "duration": 1}).encode()


def https_or_plain(port: int, cacert: str, timeout: float) -> http.client.HTTPConnection:
    """HTTPS trusting `cacert`; plain HTTP when there is none (`--plain`: the master's --no-api-tls)."""
    if not cacert:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return http.client.HTTPSConnection("localhost", port, context=ssl.create_default_context(cafile=cacert),
                                       timeout=timeout)


def submitter(port: int, cacert: str, seconds: float, start_at: float, out: multiprocessing.Queue) -> None:
    conn = https_or_plain(port, cacert, 30)
    latencies, errors = [], 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        conn.request("POST", "/api/jobs", body=JOB, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - began)
        errors += answer.status != 201
    conn.close()
    out.put((latencies, errors, time.time()))


def curl_submitter(port: int, cacert: str, count: int, start_at: float, out: multiprocessing.Queue) -> None:
    """One curl process posting `count` jobs over one keep-alive connection (curl reuses it for every URL)."""
    with tempfile.NamedTemporaryFile("w", suffix=".curlrc", delete=False) as config:
        config.write((f'url = "https://localhost:{port}/api/jobs"\n' if cacert else
                      f'url = "http://127.0.0.1:{port}/api/jobs"\n') * count)
    while time.time() < start_at:
        time.sleep(0.001)
    trust = ["--cacert", cacert] if cacert else []
    done = subprocess.run(["curl", "-sS", *trust, "-H", "Content-Type: application/json",
                           "--data-binary", JOB.decode(), "-w", "\n%{http_code} %{time_total}\n", "-K", config.name],
                          capture_output=True, text=True, check=False)
    Path(config.name).unlink()
    answers = [line.split() for line in done.stdout.splitlines() if re.fullmatch(r"\d{3} [\d.]+", line)]
    out.put(([float(t) for _, t in answers], sum(code != "201" for code, _ in answers), time.time()))


def ping_loop(cluster: LocalCluster, stop: threading.Event, samples: list[float]) -> None:
    with cluster.client() as client:
        while not stop.is_set():
            began = time.perf_counter()
            client.request("ping")
            samples.append(time.perf_counter() - began)
            stop.wait(0.005)


def zmq_calm(cluster: LocalCluster, seconds: float) -> list[float]:
    samples: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=ping_loop, args=(cluster, stop, samples))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return samples


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the master's loop (its main thread) and of its other threads (the HTTP API's, mostly)."""
    main = other = 0.0
    for thread in psutil.Process(pid).threads():
        seconds = thread.user_time + thread.system_time
        if thread.id == pid:
            main += seconds
        else:
            other += seconds
    return {"loop": main, "other_threads": other}


def py_spy(pid: int, output: Path | None, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` (its threads apart, collapsed stacks) for `seconds`, when `output` is given."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if output is None or not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds) * 20 + 60),
                             "--rate", "250", "--threads", "--gil", "--nonblocking", "--format", "raw",
                             "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def submits(cluster: LocalCluster, port: int, cacert: str, clients: int, seconds: float,
            master: psutil.Process, use_curl: bool, profile: Path | None = None) -> None:
    calm = zmq_calm(cluster, min(seconds, 3.0))
    out: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 1.0
    if use_curl:  # curl is C: the clients cost the machine less than the master they measure
        count = int(seconds * 600)
        procs = [multiprocessing.Process(target=curl_submitter, args=(port, cacert, count, start_at, out))
                 for _ in range(clients)]
    else:
        procs = [multiprocessing.Process(target=submitter, args=(port, cacert, seconds, start_at, out))
                 for _ in range(clients)]
    for proc in procs:
        proc.start()
    loaded: list[float] = []
    stop = threading.Event()
    time.sleep(max(0.0, start_at - time.time()))
    thread = threading.Thread(target=ping_loop, args=(cluster, stop, loaded))
    thread.start()
    spy = py_spy(master.pid, profile, seconds)
    cpu_before = sum(master.cpu_times()[:2])
    threads_before = thread_cpu(master.pid)
    results = [out.get(timeout=seconds + 60) for _ in procs]
    master_cpu = sum(master.cpu_times()[:2]) - cpu_before
    threads_cpu = {name: seconds - threads_before[name] for name, seconds in thread_cpu(master.pid).items()}
    stop.set()
    thread.join()
    for proc in procs:
        proc.join()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    latencies = [x for values, *_ in results for x in values]
    elapsed = max(r[2] for r in results) - start_at if use_curl else seconds
    emit({"bench": "http_api", "measure": "submits", "client": "curl" if use_curl else "python",
          "clients": clients, "seconds": round(elapsed, 2), "submits": len(latencies),
          "errors": sum(r[1] for r in results), "submits_per_s": round(len(latencies) / elapsed, 1),
          "master_cpu_s": round(master_cpu, 2),
          "master_cpu_ms_per_submit": round(1000 * master_cpu / max(1, len(latencies)), 3),
          **{f"{name}_cpu_ms_per_submit": round(1000 * seconds / max(1, len(latencies)), 3)
             for name, seconds in threads_cpu.items()},
          "machine_cpus": psutil.cpu_count(), **summary(latencies)})
    calm_s, loaded_s = summary(calm), summary(loaded)
    emit({"bench": "http_api", "measure": "zmq_request_beside", "calm_p99_ms": calm_s.get("p99_ms"),
          "loaded_p99_ms": loaded_s.get("p99_ms"), "calm_n": calm_s["n"], "loaded_n": loaded_s["n"],
          "p99_ratio": round(loaded_s["p99_ms"] / calm_s["p99_ms"], 2) if calm_s["n"] and loaded_s["n"] else None})


async def hold_idle(port: int, cacert: str, count: int, master: psutil.Process) -> None:
    context = ssl.create_default_context(cafile=cacert) if cacert else None
    before = master.memory_info().rss
    held: list[asyncio.StreamWriter] = []
    failed = 0
    gate = asyncio.Semaphore(64)  # handshakes in flight at once

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                              server_hostname="localhost" if context else None)
                writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                held.append(writer)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, IndexError, ValueError):
                failed += 1

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    opened = time.monotonic() - began
    await asyncio.sleep(1.0)
    after = master.memory_info().rss
    probe = https_or_plain(port, cacert, 10)
    t0 = time.perf_counter()
    probe.request("GET", "/health")
    status = probe.getresponse().status
    probe_ms = round((time.perf_counter() - t0) * 1000, 2)
    probe.close()
    emit({"bench": "http_api", "measure": "idle_connections", "wanted": count, "held": len(held), "failed": failed,
          "open_seconds": round(opened, 1), "rss_before_mib": round(before / 2**20, 1),
          "rss_after_mib": round(after / 2**20, 1), "rss_growth_mib": round((after - before) / 2**20, 1),
          "kib_per_connection": round((after - before) / max(1, len(held)) / 1024, 1),
          "health_while_held": status, "health_ms": probe_ms})
    for writer in held:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--client", choices=("curl", "python"), default="curl",
                        help="curl: one curl process per client, reusing its connection; python: http.client")
    parser.add_argument("--profile", type=Path, help="py-spy the master during the submits into this file")
    parser.add_argument("--plain", action="store_true",
                        help="the master with --no-api-tls (plain HTTP on loopback, as behind a TLS-terminating proxy)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 1024)), hard))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-http-") as tmp:
        cluster = LocalCluster(Path(tmp), env={"FFRTMP_PREAUTH_RATE": "1000000"},
                               master_args=["--rate-limit", "submit=0", "--rate-limit", "read=0"])
        with cluster:
            cluster.start_master(["--api-port", str(port), "--api-bind", "127.0.0.1",
                                  *(["--no-api-tls"] if args.plain else [])])
            cacert = "" if args.plain else str(cluster.master_dir / "api-cert.pem")
            assert cluster.master is not None
            master = psutil.Process(cluster.master.pid)
            if args.seconds > 0:
                submits(cluster, port, cacert, args.clients, args.seconds, master, args.client == "curl", args.profile)
            if args.idle > 0:
                asyncio.run(hold_idle(port, cacert, args.idle, master))


if __name__ == "__main__":
    main()
