"""A peer of another protocol version is told so in one sentence, on each side, instead of being ignored."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ffrtmp.defaults import PROTOCOL_VERSION
from ffrtmp.protocol import Kind
from tests.test_coordinator import Cluster

OTHER = PROTOCOL_VERSION + 1


class OtherVersionMaster:
    """A ROUTER that answers every frame in protocol OTHER, as a master of another ffrtmp release would."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"
        self.received = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            if not self.socket.poll(50):
                continue
            route, frame = self.socket.recv_multipart()
            self.received += 1
            kind = json.loads(frame).get("k")
            reply = {"k": "reply", "b": {"rid": "x", "status": 400, "error": "?"}} if kind == "request" else \
                {"k": "refused", "b": {"status": 400, "error": "?"}}
            self.socket.send_multipart([route, json.dumps({"v": OTHER, **reply}).encode()])

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.socket.close(0)
        self.context.term()


@pytest.fixture
def other_master() -> Iterator[OtherVersionMaster]:
    master = OtherVersionMaster()
    yield master
    master.close()


def sentence(own: str) -> str:
    return f"the master speaks protocol {OTHER}, this {own} {PROTOCOL_VERSION}: install the same ffrtmp version on both"


def ffrtmp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ffrtmp", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_a_worker_of_another_protocol_version_exits_2_saying_so(other_master: OtherVersionMaster,
                                                                 tmp_path: Path) -> None:
    done = ffrtmp("worker", "--master", other_master.url, "--no-tls", "--name", "w1", "--engines", "null",
                  "--metrics-port", "0", "--work-dir", str(tmp_path / "work"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert sentence("worker") in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_client_of_another_protocol_version_exits_2_saying_so(other_master: OtherVersionMaster) -> None:
    done = ffrtmp("nodes", "list", "--master", other_master.url, "--no-tls")
    assert done.returncode == 2, done.stdout + done.stderr
    assert sentence("client") in " ".join((done.stdout + done.stderr).split())
    assert "Traceback" not in done.stderr


def test_the_master_answers_in_its_version_and_logs_each_peer_once(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster(tmp_path)
    hello = json.dumps({"v": OTHER, "k": "hello", "b": {"name": "w9"}}).encode()
    request = json.dumps({"v": OTHER, "k": "request", "b": {"rid": "r1", "op": "stats"}}).encode()
    with caplog.at_level(logging.WARNING, logger="ffrtmp.master"):
        for _ in range(3):
            cluster.coordinator.handle_batch([(b"worker", hello), (b"client", request)], cluster.now)
    refused = cluster.net.take(b"worker", Kind.REFUSED)
    replies = cluster.net.take(b"client", Kind.REPLY)
    assert len(refused) == 3 and len(replies) == 3, "each frame is answered (a peer that checks can say why)"
    assert replies[0].body["rid"] == "r1" and replies[0].body["status"] == 400
    assert f"speaks protocol {PROTOCOL_VERSION}" in refused[0].body["error"]
    logged = [r.getMessage() for r in caplog.records if "install the same ffrtmp version" in r.getMessage()]
    assert logged == [f"the worker 'w9' speaks protocol {OTHER}, this master {PROTOCOL_VERSION}: install the "
                      "same ffrtmp version on both",
                      f"the client speaks protocol {OTHER}, this master {PROTOCOL_VERSION}: install the same "
                      "ffrtmp version on both"]
