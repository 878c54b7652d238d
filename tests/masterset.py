"""Several real `ffrtmp master` processes on one SQLite file (one machine) or one PostgreSQL database (`db=URL`),
and a scripted worker that follows the leader as a worker should: what the failover tests drive."""

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
from ffrtmp.masters import MasterList, leader_named, refuses_connections
from ffrtmp.protocol import NOT_LEADER, Kind, Message, decode, encode, unbatch
from ffrtmp.security import client_keypair, load_public_key, write_certificates
from ffrtmp.transport import DealerSocket
from tests.conftest import eventually
from tests.rtmp import free_port


class MasterSet:
    def __init__(self, root: Path, names: tuple[str, ...] = ("m1", "m2", "m3"), *extra: str,
                 db: str | None = None) -> None:
        self.root = root
        self.names = names
        self.extra = list(extra)
        self.db = root / "shared" / "master.db"
        """The SQLite file, unless `db` (a PostgreSQL URL) is given."""
        self.db_arg = db or str(self.db)
        self.keys = root / "keys"
        self.keys.mkdir(parents=True, exist_ok=True)
        write_certificates(self.keys, "master")
        (root / "config").mkdir(exist_ok=True)
        write_certificates(root / "config", "client")
        (root / "logs").mkdir(exist_ok=True)
        self.ports = {name: free_port() for name in names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "FFRTMP_CONFIG_DIR": str(root / "config"), "PYTHONUNBUFFERED": "1"}
        for name in ("FFRTMP_MASTER", "FFRTMP_MASTER_KEY", "FFRTMP_DATA_DIR"):
            self.env.pop(name, None)

    def address(self, name: str) -> str:
        return f"tcp://127.0.0.1:{self.ports[name]}"

    @property
    def addresses(self) -> str:
        return ",".join(self.address(name) for name in self.names)

    @property
    def master_key(self) -> str:
        return str(self.keys / "master.key")

    def start(self, name: str) -> subprocess.Popen[bytes]:
        data_dir = self.root / name
        state = data_dir / "master.json"
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
        args = [sys.executable, "-m", "ffrtmp", "master", "--name", name, "--port", str(self.ports[name]),
                "--bind", "127.0.0.1", "--data-dir", str(data_dir), "--db", self.db_arg,
                "--cert", self.master_key, "--key", str(self.keys / "master.key_secret"),
                "--metrics", "--metrics-port", "0", "--api-port", "0", *self.extra]
        with open(self.root / "logs" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, cwd=self.root)
        self.procs[name] = proc

        def listening() -> bool:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}: {self.log(name)}"
            try:
                return bool(json.loads(state.read_text()).get("pid") == proc.pid)
            except (OSError, ValueError):
                return False

        eventually(listening, timeout=30, message=f"master {name} to listen")
        return proc

    def start_all(self) -> None:
        for name in self.names:  # one after the other: the first creates the schema
            self.start(name)

    def metrics_port(self, name: str) -> int:
        return int(json.loads((self.root / name / "master.json").read_text())["metrics_port"])

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def client(self, addresses: str | None = None, timeout: float = 15.0) -> Client:
        return Client(addresses or self.addresses, master_key=self.master_key, timeout=timeout,
                      client_key=self.root / "config" / "client.key_secret")

    def status(self, name: str | None = None) -> dict[str, Any]:
        with self.client(self.address(name) if name else None, timeout=5.0) as client:
            return client.cluster()

    def log(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> MasterSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FollowingWorker:
    """The protocol side of a worker that follows the leader: HELLO (with what it runs), heartbeats, results.

    Runs nothing: jobs it gets are held until the test ends them. It moves to the next master when its own
    refuses connections, and to the named leader on a NOT_LEADER refusal, as a following worker does.
    """

    def __init__(self, masters: MasterSet, name: str = "w1") -> None:
        self.masters = MasterList.parse(masters.addresses)
        self.name = name
        self.server_key = load_public_key(masters.master_key)
        self.keys = client_keypair(masters.root / "config" / "client.key_secret")
        self.socket = DealerSocket(self.masters.address, self.server_key, self.keys, immediate=True)
        self.welcomed = False
        self.running: dict[str, int] = {}
        self.jobs: list[tuple[float, str, int]] = []
        """(monotonic time received, job, attempt) of every JOB."""
        self.last_hello = 0.0
        self.last_heartbeat = 0.0
        self.heard = time.monotonic()

    def _move(self, address: str) -> None:
        self.socket.close()
        self.socket = DealerSocket(address, self.server_key, self.keys, immediate=True)
        self.welcomed = False
        self.last_hello = 0.0
        self.heard = time.monotonic()

    def send(self, kind: Kind, body: dict[str, Any]) -> None:
        self.socket.send(encode(kind, body))

    def step(self, wait: float = 0.02) -> None:
        now = time.monotonic()
        if now - self.heard > 0.3 and refuses_connections(self.masters.address):
            self._move(self.masters.next())
            return
        if not self.welcomed and now - self.last_hello >= 0.2:
            self.last_hello = now
            self.send(Kind.HELLO, {"name": self.name, "fingerprint": f"fp-{self.name}", "version": "test",
                                   "slots": 1, "engines": ["null"], "prefetch": 0,
                                   "running": [{"job": job, "attempt": attempt}
                                               for job, attempt in self.running.items()]})
        if self.welcomed and now - self.last_heartbeat >= 0.5:
            self.last_heartbeat = now
            self.send(Kind.HEARTBEAT, {"jobs": [{"job": job, "attempt": attempt}
                                                for job, attempt in self.running.items()]})
        frame = self.socket.recv(wait)
        if frame is None:
            return
        self.heard = time.monotonic()
        message = decode(frame)
        for one in unbatch(message) if message.kind is Kind.BATCH else [message]:
            self.on(one)

    def on(self, message: Message) -> None:
        if message.kind is Kind.WELCOME:
            self.welcomed = True
        elif message.kind is Kind.REFUSED and message.body["status"] == NOT_LEADER:
            leader = leader_named(message.body)
            if leader is not None and leader != self.masters.address:
                self._move(self.masters.follow(leader))
            else:
                self.welcomed = False  # an election is under way: say HELLO again shortly
        elif message.kind is Kind.REFUSED:
            raise AssertionError(f"refused: {message.body}")
        elif message.kind is Kind.JOB:
            self.jobs.append((time.monotonic(), message.body["job"], message.body["attempt"]))
            self.running[message.body["job"]] = message.body["attempt"]
            self.send(Kind.STARTED, {"job": message.body["job"], "attempt": message.body["attempt"],
                                     "at": time.time()})

    def finish(self, job: str) -> None:
        attempt = self.running.pop(job)
        self.send(Kind.RESULT, {"job": job, "attempt": attempt, "status": "completed", "at": time.time()})

    def until(self, condition: Any, timeout: float, message: str) -> Any:
        return eventually(lambda: self.step() or condition(), timeout=timeout, interval=0.0, message=message)

    def close(self) -> None:
        self.socket.close()

