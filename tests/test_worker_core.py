"""The worker core on a fixed clock with a fake master: no socket, no sleeping (as test_coordinator.py does for
the master). Every message in and out goes through the real protocol encoder and decoder, so a body the
master would reject fails here too."""

from __future__ import annotations

import ast
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from ffrtmp import defaults
from ffrtmp.protocol import Kind, decode, encode
from ffrtmp.worker import core as core_module
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core import HANDLERS, HELLO_RETRY, JOIN_POLL, WorkerCore
from ffrtmp.worker.core_options import WorkerExit, WorkerOptions
from ffrtmp.worker.runner import Event

NULL_ONLY = Capabilities(engines=["null"], ffmpeg=None, gstreamer=None)
NULL_SPEC: dict[str, Any] = {"engine": "null", "scenario": "t", "queue": "default", "priority": "medium",
                             "labels": {}, "params": {"duration": 1, "resolution": "160x120", "fps": 25,
                                                      "codec": "h264"}}


class FakeMaster:
    """The core's link: keeps what the worker sends (a BATCH opened into its messages), and plays the connection
    (up or not, a failed handshake, a master process that is down)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Kind, dict[str, Any]]] = []
        self.up = True
        self.down = False
        self.handshake: str | None = None
        self.reconnects = 0

    def send(self, kind: Kind, body: dict[str, Any]) -> bool:
        if not self.up:
            return False
        message = decode(encode(kind, body))  # what the master would read, checked against the schema
        if message.kind is Kind.BATCH:
            self.sent += [(Kind(item["k"]), item["b"]) for item in message.body["items"]]
        else:
            self.sent.append((message.kind, message.body))
        return True

    def reconnect(self) -> None:
        self.reconnects += 1

    def handshake_error(self) -> str | None:
        return self.handshake

    def master_down(self) -> bool:
        return self.down

    def wake(self) -> None:
        pass

    def take(self, kind: Kind) -> list[dict[str, Any]]:
        """The bodies of `kind` sent since the last take (the other kinds stay)."""
        taken = [body for sent, body in self.sent if sent is kind]
        self.sent = [(sent, body) for sent, body in self.sent if sent is not kind]
        return taken


class Worker:
    """A core with its fake master and two pinned clocks: monotonic (drives everything) and wall (stamps)."""

    def __init__(self, work: Path, capabilities: Capabilities = NULL_ONLY, **options: Any) -> None:
        self.mono, self.wall = 1_000.0, 1.7e9
        self.master = FakeMaster()
        options.setdefault("heartbeat_interval", 1.0)
        self.core = WorkerCore(WorkerOptions(master="tcp://127.0.0.1:1", name="w1", work_dir=work, **options),
                               capabilities, self.master, mono=self.mono)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def tick(self) -> None:
        self.core.tick(self.wall, self.mono)

    def hear(self, kind: Kind, body: dict[str, Any] | None = None) -> None:
        self.core.receive(encode(kind, body), self.wall, self.mono)

    def welcome(self, node_timeout: float = 10.0, **extra: Any) -> None:
        self.hear(Kind.WELCOME, {"node": "w1", "heartbeat_interval": 1.0, "node_timeout": node_timeout, **extra})

    def null_job(self, job: str, attempt: int = 1) -> None:
        self.hear(Kind.JOB, {"job": job, "attempt": attempt, "spec": NULL_SPEC})
        self.tick()


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    return Worker(tmp_path / "work")


# ---- joining --------------------------------------------------------------------------------------------


def test_hello_is_repeated_until_the_master_welcomes_then_heartbeats_run_on_the_monotonic_clock(
        worker: Worker) -> None:
    worker.tick()
    [hello] = worker.master.take(Kind.HELLO)
    assert hello["name"] == "w1" and hello["running"] == [] and hello["draining"] is False
    worker.advance(HELLO_RETRY - 0.1)
    worker.tick()
    assert worker.master.take(Kind.HELLO) == []
    worker.master.up = False  # the connection is not up yet: the HELLO could not be queued
    worker.advance(0.1)
    worker.tick()
    worker.master.up = True
    worker.tick()
    assert len(worker.master.take(Kind.HELLO)) == 1, "retried as soon as the connection comes up"
    assert worker.core.poll_timeout(worker.mono) == JOIN_POLL
    worker.welcome()
    worker.tick()
    assert len(worker.master.take(Kind.HEARTBEAT)) == 1
    worker.wall += 3600  # a step of the wall clock moves no deadline
    worker.advance(0.5)
    worker.tick()
    assert worker.master.take(Kind.HEARTBEAT) == []
    assert worker.core.poll_timeout(worker.mono) == pytest.approx(0.5)
    worker.advance(0.5)
    worker.tick()
    assert len(worker.master.take(Kind.HEARTBEAT)) == 1 and worker.master.take(Kind.HELLO) == []


@pytest.mark.parametrize(("status", "code"), [(401, 4), (409, 2), (400, 2), (500, 2)])
def test_a_refusal_ends_the_worker_with_its_exit_code(worker: Worker, status: int, code: int) -> None:
    with pytest.raises(WorkerExit) as done:
        worker.hear(Kind.REFUSED, {"status": status, "error": "no such key"})
    assert done.value.code == code and "the master refused this worker: no such key" in str(done.value)


def test_a_master_speaking_another_protocol_ends_the_worker_with_code_2(worker: Worker) -> None:
    frame = json.dumps({"v": 99, "k": "welcome", "b": {}}).encode()
    with pytest.raises(WorkerExit) as done:
        worker.core.receive(frame, worker.wall, worker.mono)
    assert done.value.code == 2 and "99" in str(done.value)


def test_a_malformed_frame_is_dropped_and_renews_nothing(worker: Worker) -> None:
    worker.welcome(node_timeout=4.0)
    worker.advance(3.0)
    worker.core.receive(b"not json", worker.wall, worker.mono)
    worker.core.receive(encode(Kind.ACK, {"job": "j"}), worker.wall, worker.mono)  # no attempt: fails its schema
    assert worker.core.lease.silent_for(worker.mono) == pytest.approx(3.0)


def test_a_failed_handshake_ends_a_worker_that_never_joined_but_not_one_that_did(tmp_path: Path) -> None:
    fresh = Worker(tmp_path / "a")
    fresh.master.handshake = "CURVE handshake failed"
    with pytest.raises(WorkerExit) as done:
        fresh.tick()
    assert done.value.code == 3 and "--master-key" in str(done.value)
    joined = Worker(tmp_path / "b")
    joined.welcome()
    joined.hear(Kind.RESYNC)
    joined.master.handshake = "CURVE handshake failed"
    joined.tick()  # a master that restarted with another key is waited for, not given up on
    assert len(joined.master.take(Kind.HELLO)) == 1


def test_every_kind_a_master_sends_a_worker_has_a_handler_and_others_are_ignored(worker: Worker) -> None:
    assert set(HANDLERS) == {Kind.WELCOME, Kind.REFUSED, Kind.RESYNC, Kind.HEARTBEAT, Kind.DRAIN, Kind.ACK,
                             Kind.JOB, Kind.CANCEL}
    worker.welcome()
    worker.advance(5.0)
    worker.hear(Kind.BYE)
    assert worker.core.lease.silent_for(worker.mono) == 0.0, "any message from the master renews the lease"


# ---- losing the master ------------------------------------------------------------------------------


def test_a_silent_master_is_left_after_the_node_timeout_and_rejoined_with_backoff(worker: Worker) -> None:
    worker.welcome(node_timeout=4.0)
    worker.tick()
    worker.advance(4.0)
    worker.tick()
    assert worker.master.reconnects == 0, "silent for exactly the node timeout: not yet"
    worker.advance(0.1)
    worker.master.sent.clear()
    worker.tick()
    assert worker.master.reconnects == 1 and not worker.core.welcomed
    assert len(worker.master.take(Kind.HELLO)) == 1, "the new connection says HELLO at once"
    worker.advance(defaults.RECONNECT_MIN * 0.49)
    worker.tick()
    assert worker.master.reconnects == 1, "the next reconnect waits at least half the backoff"
    worker.advance(defaults.RECONNECT_MIN * 0.51)
    worker.tick()
    assert worker.master.reconnects == 2
    worker.advance(defaults.RECONNECT_MIN)  # the backoff doubled: at least 2 x RECONNECT_MIN x 0.5
    worker.tick()
    assert worker.master.reconnects == 2
    worker.welcome(node_timeout=4.0)
    assert worker.core.welcomed and worker.core.reconnect_delay == defaults.RECONNECT_MIN


def test_results_go_out_again_until_the_master_acknowledges_them(worker: Worker) -> None:
    worker.welcome()
    worker.null_job("j1")
    [first] = worker.master.take(Kind.RESULT)
    assert first["status"] == "completed" and first["at"] == worker.wall and "started_at" in first
    assert worker.master.take(Kind.STARTED) == [], "a job that started and ended in one pass needs no STARTED"
    worker.advance(defaults.RESULT_RESEND_INTERVAL - 0.1)
    worker.hear(Kind.HEARTBEAT, {"pending": 0})
    worker.tick()
    assert worker.master.take(Kind.RESULT) == []
    [heartbeat] = worker.master.take(Kind.HEARTBEAT)[-1:]
    assert {"job": "j1", "attempt": 1} in heartbeat["jobs"], "the master is told the result is on its way"
    worker.advance(0.1)
    worker.tick()
    assert worker.master.take(Kind.RESULT) == [first]
    worker.hear(Kind.RESYNC)  # a master that lost us: HELLO says what we hold, WELCOME gets it all again at once
    worker.tick()
    assert worker.master.take(Kind.HELLO)[0]["running"] == [{"job": "j1", "attempt": 1}]
    worker.welcome()
    assert worker.master.take(Kind.RESULT) == [first]
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    for _ in range(3):
        worker.advance(defaults.RESULT_RESEND_INTERVAL)
        worker.hear(Kind.HEARTBEAT, {"pending": 0})
        worker.tick()
    assert worker.master.take(Kind.RESULT) == [] and worker.core.results.unacked == {}


def test_results_never_acknowledged_are_kept_and_reported_by_the_next_run(tmp_path: Path) -> None:
    first = Worker(tmp_path / "work")
    first.welcome()
    first.null_job("j1")
    first.core.results.keep()  # what the loop does on its way out
    again = Worker(tmp_path / "work")
    again.tick()
    assert again.master.take(Kind.HELLO)[0]["running"] == [{"job": "j1", "attempt": 1}]
    again.welcome()
    [result] = again.master.take(Kind.RESULT)
    assert result["job"] == "j1" and result["status"] == "completed"
    again.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    assert again.core.results.spool.load() == []


def test_log_lines_wait_for_the_welcome_and_leave_the_spool_on_the_masters_ack(worker: Worker) -> None:
    worker.core.emit(Event("log", "j1", 1, (1, worker.wall, "stderr", "frame=1")))
    worker.advance(1.0)
    worker.tick()
    assert worker.master.take(Kind.LOG) == [], "a LOG before the master knows us would be dropped"
    worker.welcome()
    [batch] = worker.master.take(Kind.LOG)
    assert batch["lines"] == [[1, worker.wall - 1.0, "stderr", "frame=1"]]
    worker.hear(Kind.HEARTBEAT, {"logs": [["j1", 1, 1]]})
    assert worker.core.logs.pending() == 0


# ---- stopping ---------------------------------------------------------------------------------------


def test_a_drain_refuses_new_jobs_and_exits_0_once_every_result_is_acknowledged(worker: Worker) -> None:
    worker.welcome()
    worker.null_job("j1")
    worker.core.request_stop()
    worker.tick()
    assert worker.core.poll_timeout(worker.mono) == 0.0, "the master is told on the very next pass"
    worker.tick()
    assert worker.master.take(Kind.HEARTBEAT)[-1]["draining"] is True
    worker.hear(Kind.JOB, {"job": "j2", "attempt": 1, "spec": NULL_SPEC})
    worker.tick()
    refused = {body["job"]: body for body in worker.master.take(Kind.RESULT)}["j2"]
    assert refused["refused"] is True and refused["failure"] == "worker_lost"
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    worker.hear(Kind.ACK, {"job": "j2", "attempt": 1})
    with pytest.raises(WorkerExit) as done:
        worker.tick()
    assert done.value.code == 0 and str(done.value) == "drained: 1 completed, 1 failed"
    assert worker.master.take(Kind.BYE) == [{}]


def test_a_drain_ordered_by_the_master_is_the_same_drain(worker: Worker) -> None:
    worker.welcome()
    worker.hear(Kind.DRAIN)
    assert worker.core.draining
    with pytest.raises(WorkerExit) as done:
        worker.tick()
    assert done.value.code == 0


def test_a_drain_with_results_the_master_never_takes_exits_3_after_the_deliver_timeout(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "work", deliver_timeout=5.0)
    worker.welcome()
    worker.null_job("j1")
    worker.core.request_stop()
    worker.tick()
    worker.advance(4.9)
    worker.tick()
    worker.advance(0.1)
    with pytest.raises(WorkerExit) as done:
        worker.tick()
    assert done.value.code == 3 and "1 results not acknowledged" in str(done.value)
    assert "job j1 attempt 1 completed" in str(done.value)


def test_burst_exits_once_the_master_says_nothing_is_pending_and_everything_is_acknowledged(
        tmp_path: Path) -> None:
    worker = Worker(tmp_path / "work", burst=True)
    worker.tick()
    worker.hear(Kind.HEARTBEAT, {"pending": 0})
    worker.tick()  # not welcomed yet: a burst worker never leaves before it has joined
    worker.welcome()
    worker.hear(Kind.HEARTBEAT, {"pending": 1})
    worker.tick()
    worker.null_job("j1")
    worker.hear(Kind.HEARTBEAT, {"pending": 0})
    worker.tick()  # its result is not acknowledged yet
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    worker.master.sent.clear()
    worker.tick()
    assert len(worker.master.take(Kind.HEARTBEAT)) == 1, "asks again at once whether work is left"
    worker.hear(Kind.HEARTBEAT, {"pending": 0})
    with pytest.raises(WorkerExit) as done:
        worker.tick()
    assert done.value.code == 0 and str(done.value) == "burst done: 1 completed, 0 failed"
    assert worker.master.take(Kind.BYE) == [{}]


# ---- the core itself ----------------------------------------------------------------------------------


def test_the_core_reads_no_clock_and_imports_no_socket_library() -> None:
    for path in sorted(Path(core_module.__file__).parent.glob("core*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"zmq", "time", "socket"}, path.name
        calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name)}
        assert "getattr" not in calls, f"{path.name}: messages go through HANDLERS"


def test_poll_timeout_follows_the_nearest_deadline(worker: Worker) -> None:
    assert worker.core.poll_timeout(worker.mono) == JOIN_POLL
    worker.welcome()
    worker.tick()
    worker.advance(0.75)
    assert worker.core.poll_timeout(worker.mono) == pytest.approx(0.25)
    assert worker.core.stop.due_in(worker.mono) == math.inf


def test_runner_threads_wake_the_loop_once_per_pass(worker: Worker) -> None:
    wakes: list[int] = []
    worker.core.link.wake = lambda: wakes.append(1)  # type: ignore[method-assign]
    worker.core.loop_thread = threading.get_ident()

    def emit_logs(count: int) -> None:
        for n in range(count):
            worker.core.emit(Event("log", "j1", 1, (n, worker.wall, "stderr", f"line {n}")))

    def from_a_runner(count: int) -> None:
        thread = threading.Thread(target=emit_logs, args=(count,))
        thread.start()
        thread.join()

    from_a_runner(5)
    assert len(wakes) == 1, "five lines before the loop ran: one wake-up"
    worker.tick()  # the loop drains them all
    assert worker.core.jobs.events.empty()
    from_a_runner(2)
    assert len(wakes) == 2, "a line after the drain wakes the loop again"


def test_no_quality_inline_reaches_the_runners_measuring(tmp_path: Path) -> None:
    assert Worker(tmp_path / "a").core.jobs.measuring.inline is True
    assert Worker(tmp_path / "b", quality_inline=False).core.jobs.measuring.inline is False
