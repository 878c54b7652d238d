"""A whole cluster on this machine as real processes: a master and N workers in one directory.

`ffrtmp demo` uses it, and so do the end-to-end tests and the benchmarks, so what they exercise is exactly
what a user runs: `ffrtmp master` and `ffrtmp worker` processes talking CURVE over loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ffrtmp.client import Client
from ffrtmp.errors import FfrtmpError
from ffrtmp.master.server import STATE_FILE
from ffrtmp.security import write_certificates

START_TIMEOUT = 30.0


class ClusterError(FfrtmpError):
    """A local master or worker did not come up."""


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy; raise with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class LocalCluster:
    def __init__(self, root: Path, *, tls: bool = True, master_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.tls = tls
        self.master_args = master_args or []
        self.master_dir = root / "master"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FFRTMP_CONFIG_DIR": str(root / "config"), "FFRTMP_DATA_DIR": str(self.master_dir),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("FFRTMP_MASTER", None)
        self.env.pop("FFRTMP_MASTER_KEY", None)
        if tls and not (root / "config" / "client.key_secret").exists():
            write_certificates(root / "config", "client")
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        self.port = 0

    # ---- processes --------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        try:
            return subprocess.Popen([sys.executable, "-m", "ffrtmp", *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env, cwd=self.root)
        finally:
            log.close()

    def start_master(self, extra: list[str] | None = None, port: int = 0, metrics_port: int | None = None) -> str:
        """Start (or restart, with `port` = the old one) the master; returns its URL once it listens.

        Metrics are off unless `metrics_port` is given (0 picks a free one, written to `master.json`).
        """
        state = self.master_dir / STATE_FILE
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
        metrics = ["--no-metrics"] if metrics_port is None else ["--metrics", "--metrics-port", str(metrics_port)]
        args = ["master", "--port", str(port), "--bind", "127.0.0.1", "--data-dir", str(self.master_dir),
                "--api-port", "0", "--files-port", "0", *metrics, *self.master_args,
                *(extra or [])]  # the HTTP API and the files port: opt in per test
        if not self.tls:
            args.append("--no-tls")
        self.master = self._spawn("master", args)
        proc = self.master

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise ClusterError(f"the master exited with {proc.returncode}: {self.log_tail('master')}")
            try:
                data: dict[str, Any] = json.loads(state.read_text())
            except (OSError, ValueError):
                return None
            return data if data.get("pid") == proc.pid else None

        self.url = wait_for(ready, START_TIMEOUT, "the master to listen")["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def connection_args(self) -> list[str]:
        args = ["--master", self.url]
        args += ["--master-key", str(self.master_dir / "master.key")] if self.tls else ["--no-tls"]
        return args

    def start_worker(self, name: str, *extra: str, slots: int = 1) -> subprocess.Popen[bytes]:
        args = ["worker", "--name", name, "--slots", str(slots), "--work-dir", str(self.root / "work" / name),
                "--metrics-port", "0", *self.connection_args(), *extra]
        proc = self._spawn(name, args)
        self.workers[name] = proc
        return proc

    def api_key(self, role: str, tenant: str) -> str:
        """Issue an API key on this cluster's master database (as `ffrtmp keys api create` does)."""
        from ffrtmp.master.auth import create_key
        from ffrtmp.master.store import open_store

        store = open_store(self.master_dir / "master.db", 0)
        try:
            return create_key(store, role, tenant)[1]
        finally:
            store.close()

    def client(self, timeout: float = 10.0) -> Client:
        if not self.tls:
            return Client(self.url, timeout=timeout, tls=False)
        return Client(self.url, master_key=str(self.master_dir / "master.key"), timeout=timeout,
                      client_key=self.root / "config" / "client.key_secret")

    def wait_for_nodes(self, names: list[str], timeout: float = START_TIMEOUT) -> None:
        with self.client() as client:
            def joined() -> bool:
                for name, proc in self.workers.items():
                    if name in names and proc.poll() is not None:
                        raise ClusterError(f"worker {name} exited with {proc.returncode}: {self.log_tail(name)}")
                online = {n["name"] for n in client.nodes() if n["status"] == "online"}
                return set(names) <= online

            wait_for(joined, timeout, f"workers {', '.join(names)} to join", interval=0.1)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- stopping ---------------------------------------------------------------------------------

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM everything (workers first, so they can say goodbye), SIGKILL what lingers."""
        procs = [*self.workers.values(), *([self.master] if self.master else [])]
        for proc in self.workers.values():
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.workers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        if self.master is not None and self.master.poll() is None:
            self.kill(self.master, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)
                proc.wait()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
