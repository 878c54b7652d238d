"""The database going away and coming back, for real: the store talks to PostgreSQL through a TCP relay that
the test cuts and restores (the shared server itself is never stopped)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ffrtmp.errors import StoreUnavailable
from ffrtmp.master.store.health import WriteFault
from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from ffrtmp.protocol import Kind, encode
from tests.test_coordinator import Cluster
from tests.test_store import T0, spec


class Relay:
    """127.0.0.1:PORT → the server; `cut()` drops every connection and refuses new ones, `restore()` listens
    again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.listener: socket.socket | None = None
        self.links: list[socket.socket] = []
        self.lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.target)
            with self.lock:
                self.links += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            self.listener.close()
            self.listener = None
        with self.lock:
            links, self.links = self.links, []
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()


@contextlib.contextmanager
def relay_to(postgres_url: str) -> Iterator[tuple[str, Relay]]:
    """`postgres_url` through a relay: (the relayed URL, the relay)."""
    parts = urlsplit(postgres_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    try:
        yield urlunsplit((parts.scheme, f"{userinfo}127.0.0.1:{relay.port}", parts.path, parts.query, "")), relay
    finally:
        relay.cut()


@pytest.fixture
def relayed(postgres_url: str) -> Iterator[tuple[str, Relay]]:
    with relay_to(postgres_url) as relayed:
        yield relayed


def test_a_lost_server_is_one_clear_line_and_the_store_comes_back_with_it(relayed: tuple[str, Relay]) -> None:
    url, relay = relayed
    store = open_postgres_store(url)
    try:
        job_id = store.insert_jobs([spec()], T0, 3)[0]
        relay.cut()
        with pytest.raises(StoreUnavailable) as unavailable:
            store.get_job(job_id)
        message = str(unavailable.value)
        assert message.startswith("store unavailable: PostgreSQL at ") and "\n" not in message
        with pytest.raises(WriteFault), store.transaction():
            store.insert_jobs([spec()], T0, 3)
        with pytest.raises(StoreUnavailable, match="retry later"):
            store.get_job(job_id)  # still down: refused again, never a traceback
        relay.restore()
        assert store.get_job(job_id)["status"] == "pending"  # type: ignore[index]  # reconnected
        with store.transaction():
            store.insert_jobs([spec()], T0, 3)
        assert store.status_counts() == {"pending": 2}
    finally:
        store.close()


def request_at(cluster: Cluster, mono: float, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """`Cluster.request` on a fixed monotonic clock (degraded mode's backoff counts in it)."""
    cluster.rids += 1
    body = {"rid": str(cluster.rids), "op": op, "args": args or {}}
    cluster.coordinator.handle_batch([(b"client", encode(Kind.REQUEST, body))], cluster.now, mono)
    (reply,) = [m for m in cluster.net.take(b"client", Kind.REPLY) if m.body["rid"] == str(cluster.rids)]
    return dict(reply.body)


def test_the_coordinator_refuses_writes_while_the_server_is_gone_and_resumes_when_it_is_back(
        relayed: tuple[str, Relay], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url, relay = relayed
    opened: list[PostgresStore] = []
    monkeypatch.setattr("tests.test_coordinator.SqliteStore", lambda path: opened.append(open_postgres_store(url))
                        or opened[-1])
    cluster = Cluster(tmp_path)
    health = cluster.coordinator.state.store_health
    try:
        cluster.hello(b"w1", "alpha")
        running = cluster.submit()  # assigned to alpha at once
        assert cluster.job(running)["status"] == "assigned"
        mono = 1000.0
        relay.cut()
        reply = request_at(cluster, mono, "submit", {"jobs": [{"scenario": "t", "engine": "null"}]})
        assert reply["status"] == 507 and "nothing was stored" in reply["error"], reply
        assert health.degraded and health.before_retry is not None  # the resync read failed too: owed
        assert "check the disk" not in reply["error"] and "database server" in reply["error"], reply
        assert "PostgreSQL at " in reply["error"] and "Traceback" not in caplog.text

        # Degraded: the node stays alive and is answered, a read that meets the lost server is refused.
        beat = encode(Kind.HEARTBEAT, {"jobs": [{"job": running, "attempt": 1, "progress": 0.5}]})
        cluster.coordinator.handle_batch([(b"w1", beat)], cluster.now, mono + 0.1)
        assert len(cluster.net.take(b"w1", Kind.HEARTBEAT)) == 1
        assert request_at(cluster, mono + 0.2, "get", {"id": running})["status"] == 507

        # The retry after the backoff, with the server still gone: refused again, the backoff doubles.
        first_backoff = health.backoff
        assert request_at(cluster, health.retry_at + 0.01, "submit",
                          {"jobs": [{"scenario": "t", "engine": "null"}]})["status"] == 507
        assert health.degraded and health.backoff == 2 * first_backoff
        assert health.fault is not None and health.fault.count("store unavailable") == 1, health.fault
        assert "PostgreSQL at " in health.fault and "check the disk" not in health.fault

        relay.restore()
        retry = health.retry_at + 0.01
        reply = request_at(cluster, retry, "submit", {"jobs": [{"scenario": "t", "engine": "null"}]})
        assert reply["status"] == 200, reply
        assert not health.degraded and health.before_retry is None
        assert request_at(cluster, retry + 0.1, "get", {"id": running})["body"]["status"] == "assigned"
        assert cluster.coordinator.state.registry.nodes["alpha"].attempts.keys() == {running}
        cluster.result(b"w1", running, 1)  # the worker's result of the attempt it kept running
        assert request_at(cluster, retry + 0.2, "get", {"id": running})["body"]["status"] == "completed"
    finally:
        for store in opened:
            store.close()
