"""The worker core with real runners (a real ffmpeg reading an input that never sends, so it runs until it is
stopped) on a fixed clock with the fake master: losing the lease, keeping attempts through a master restart
for the new master to adopt, a cancel, and the drain timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.jobspec import validate_submission
from ffrtmp.protocol import Kind
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core_options import WorkerExit
from ffrtmp.worker.encoders import Encoder
from ffrtmp.worker.runner import Attempt
from ffrtmp.worker.stopping import end_attempts
from tests.conftest import eventually
from tests.test_worker_core import Worker


@pytest.fixture
def silent_input() -> Iterator[socket.socket]:
    """A TCP input that accepts ffmpeg's connection and never sends a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(20)
        yield listener


@pytest.fixture
def worker(tmp_path: Path, ffmpeg: str) -> Iterator[Worker]:
    capabilities = Capabilities(engines=["ffmpeg"], ffmpeg=ffmpeg, gstreamer=None,
                                encoders=[Encoder("libx264", "h264", False, available=True, validated=True)])
    one = Worker(tmp_path / "work", capabilities, allow_private_network=True, drain_timeout=30.0)
    yield one
    end_attempts(list(one.core.attempts.values()), 5.0, time.monotonic)


def start_stalled_job(worker: Worker, listener: socket.socket, job: str = "j1") -> tuple[Attempt, socket.socket]:
    """A real ffmpeg job, running: its process is connected to the silent input."""
    host, port = listener.getsockname()
    params = validate_submission({"scenario": "stalled", "input": f"tcp://{host}:{port}", "resolution": "160x120",
                                  "duration": 60, "codec": "h264"}).params
    spec: dict[str, Any] = {"scenario": "stalled", "engine": "ffmpeg", "queue": "default", "priority": "medium",
                            "params": params, "labels": {}, "timeout": None, "tenant": "acme"}
    worker.hear(Kind.JOB, {"job": job, "attempt": 1, "spec": spec})
    connection, _ = listener.accept()
    attempt = worker.core.attempts[job]
    eventually(lambda: attempt.pid is not None, message="the engine's pid")
    worker.tick()
    [started] = worker.master.take(Kind.STARTED)
    assert started["job"] == job and started["at"] == worker.wall
    return attempt, connection


def ended(worker: Worker, job: str) -> dict[str, Any]:
    """Drive the core until the runner of `job` has reported its end; that RESULT."""
    eventually(lambda: (worker.tick(), job not in worker.core.attempts)[1], message=f"{job} to end")
    return {body["job"]: body for body in worker.master.take(Kind.RESULT)}[job]


def test_a_running_attempt_is_stopped_and_reported_lost_when_the_lease_runs_out(
        worker: Worker, silent_input: socket.socket) -> None:
    worker.welcome(node_timeout=4.0)
    attempt, connection = start_stalled_job(worker, silent_input)
    with connection:
        for _ in range(4):  # the master is silent, but its port still accepts: a partition or a frozen master
            worker.advance(1.0)
            worker.tick()
        assert not attempt.cancel.is_set(), "silent for exactly the node timeout: still ours"
        worker.advance(0.1)
        worker.tick()
        assert attempt.cancel.is_set() and attempt.cancel_reason.startswith("worker lost its master")
        assert worker.master.reconnects == 1
        result = ended(worker, "j1")
    assert result["status"] == "failed" and result["failure"] == "worker_lost"


def test_attempts_are_kept_through_a_master_restart_and_offered_to_the_new_master(
        worker: Worker, silent_input: socket.socket) -> None:
    worker.welcome(node_timeout=4.0)
    attempt, connection = start_stalled_job(worker, silent_input)
    with connection:
        worker.master.down = True  # nothing listens at the master's address: it is restarting
        for _ in range(12):
            worker.advance(1.0)
            worker.tick()
        assert not attempt.cancel.is_set() and worker.master.reconnects == 0
        worker.master.down = False
        worker.hear(Kind.RESYNC)  # the new master does not know this node yet
        worker.tick()
        [hello] = worker.master.take(Kind.HELLO)
        assert hello["running"] == [{"job": "j1", "attempt": 1}], "the new master adopts what still runs"
        worker.welcome(node_timeout=4.0)
        worker.tick()
        beat = worker.master.take(Kind.HEARTBEAT)[-1]
        assert [job["job"] for job in beat["jobs"]] == ["j1"] and not attempt.cancel.is_set()
        worker.hear(Kind.CANCEL, {"job": "j1", "attempt": 1})
        result = ended(worker, "j1")
    assert result["status"] == "canceled" and result["error"] == "canceled by the master"


def test_a_drain_stops_what_still_runs_at_the_drain_timeout_then_exits_0(
        worker: Worker, silent_input: socket.socket) -> None:
    worker.welcome(node_timeout=60.0)
    attempt, connection = start_stalled_job(worker, silent_input)
    with connection:
        worker.core.request_stop()
        worker.tick()
        worker.advance(30.0)
        worker.hear(Kind.HEARTBEAT, {"pending": 0})
        worker.tick()
        assert not attempt.cancel.is_set(), "running attempts get the whole drain timeout"
        worker.advance(0.1)
        worker.tick()
        assert attempt.cancel.is_set() and attempt.cancel_reason == "worker shutting down"
        result = ended(worker, "j1")
    assert result["status"] == "failed" and result["failure"] == "worker_lost", "lost: retried elsewhere"
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    with pytest.raises(WorkerExit) as done:
        worker.tick()
    assert done.value.code == 0 and str(done.value) == "drained: 0 completed, 1 failed"
