"""How a worker stops and how it times things: the stop plan, the master lease, the result spool, and the
agent's loop decisions on pinned clocks (a monotonic one that drives every interval, a wall one that only stamps).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.protocol import Kind, encode
from ffrtmp.worker.agent import Agent, WorkerExit, WorkerOptions
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.lease import MasterLease, master_down
from ffrtmp.worker.runner import Attempt
from ffrtmp.worker.spool import ResultSpool
from ffrtmp.worker.stopping import FORCE_WAIT, StopPlan, Verdict

# ---- the stop plan ----------------------------------------------------------------------------------


def test_a_drain_with_nothing_left_to_deliver_ends_at_once() -> None:
    plan = StopPlan(drain_timeout=60, deliver_timeout=10)
    assert plan.verdict(100.0, running=0, undelivered=0) is None, "not stopping yet"
    assert plan.request(100.0) is True
    assert plan.verdict(100.0, running=1, undelivered=0) is None
    assert plan.verdict(130.0, running=0, undelivered=0) is Verdict.DRAINED


def test_running_attempts_are_stopped_only_after_the_drain_timeout() -> None:
    plan = StopPlan(drain_timeout=60, deliver_timeout=10)
    plan.request(100.0)
    assert not plan.attempts_overdue(160.0)
    assert plan.attempts_overdue(160.1)


def test_undelivered_results_get_the_deliver_timeout_from_when_the_last_attempt_ended() -> None:
    plan = StopPlan(drain_timeout=60, deliver_timeout=10)
    plan.request(100.0)
    assert plan.verdict(105.0, running=1, undelivered=0) is None
    assert plan.verdict(120.0, running=0, undelivered=1) is None  # the last attempt ended at 120
    assert plan.due_in(120.0) == pytest.approx(10.0)
    assert plan.verdict(129.9, running=0, undelivered=1) is None
    assert plan.verdict(130.0, running=0, undelivered=1) is Verdict.UNDELIVERED


def test_a_second_request_forces_the_stop_within_force_wait() -> None:
    plan = StopPlan(drain_timeout=60, deliver_timeout=10)
    plan.request(100.0)
    assert plan.request(101.0) is False
    assert plan.attempts_overdue(101.0), "a forced stop stops the attempts at once"
    assert plan.verdict(101.0, running=1, undelivered=0) is None
    assert plan.verdict(101.0 + FORCE_WAIT, running=1, undelivered=0) is Verdict.UNDELIVERED
    assert StopPlan(60, 10, started=1.0, forced_at=2.0).verdict(2.0, running=0, undelivered=0) is Verdict.DRAINED


def test_due_in_never_points_at_a_past_deadline() -> None:
    plan = StopPlan(drain_timeout=5, deliver_timeout=10)
    assert plan.due_in(0.0) == math.inf
    plan.request(0.0)
    assert plan.due_in(1.0) == pytest.approx(4.0)
    assert plan.due_in(6.0) == math.inf, "a passed deadline must not make the loop spin"


# ---- the lease ---------------------------------------------------------------------------------------


def test_the_lease_expires_after_node_timeout_of_silence_and_is_renewed_by_the_master() -> None:
    lease = MasterLease(node_timeout=10, heard_at=50.0)
    assert not lease.expired(60.0) and lease.due_in(55.0) == pytest.approx(5.0)
    assert lease.expired(60.01)
    lease.heard(60.0)
    assert not lease.expired(69.0)


# ---- the spool ---------------------------------------------------------------------------------------


def result(job: str, attempt: int = 1, status: str = "completed") -> dict[str, Any]:
    return {"job": job, "attempt": attempt, "at": 1.0e9, "status": status, "error": None, "failure": None,
            "metrics": {}, "output": None}


def test_the_spool_keeps_results_across_runs_and_skips_what_is_not_a_result(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "spool")
    assert spool.load() == []
    spool.save([result("j1"), result("../j2", 2, "failed")])
    (tmp_path / "spool" / "junk.1.json").write_text('{"job": 3}')
    (tmp_path / "spool" / "torn.1.json").write_text('{"job": "x", "att')
    loaded = sorted(spool.load(), key=lambda b: b["job"])
    assert [(b["job"], b["attempt"], b["status"]) for b in loaded] == [("../j2", 2, "failed"), ("j1", 1, "completed")]
    assert all(p.parent == tmp_path / "spool" for p in (tmp_path / "spool").iterdir()), "ids never make paths"
    spool.remove("j1", 1)
    assert [b["job"] for b in spool.load()] == ["../j2"]


# ---- the agent on pinned clocks -----------------------------------------------------------------------


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocks() -> tuple[Clock, Clock]:
    return Clock(1_000.0), Clock(1.7e9)  # (monotonic, wall)


@pytest.fixture
def frozen_master() -> Iterator[str]:
    """An address where something accepts TCP connections and never answers: a live master, frozen."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


def refused_address() -> str:
    """An address where nothing listens: no master process there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_master_down_means_refused_not_silent(frozen_master: str) -> None:
    assert master_down(refused_address())
    assert not master_down(frozen_master), "a frozen (or partitioned) master is not down: it may give work away"
    assert not master_down("ipc:///tmp/nothing")


def make_agent(tmp_path: Path, clocks: tuple[Clock, Clock], master: str = "tcp://127.0.0.1:1",
               **options: Any) -> Agent:
    mono, wall = clocks
    agent = Agent(WorkerOptions(master=master, name="w1", work_dir=tmp_path / "work", **options),
                  Capabilities(engines=["null"], ffmpeg=None, gstreamer=None), wall=wall, mono=mono)
    agent.connect(mono())
    return agent


def welcome(agent: Agent, now: float, node_timeout: float = 10.0) -> None:
    agent.on_frame(encode(Kind.WELCOME, {"node": "w1", "heartbeat_interval": 1.0, "node_timeout": node_timeout}), now)


def run_null_job(agent: Agent, job: str, now: float) -> None:
    agent.on_frame(encode(Kind.JOB, {"job": job, "attempt": 1, "spec": {
        "engine": "null", "scenario": "t", "queue": "default", "priority": "medium", "labels": {},
        "params": {"duration": 1, "resolution": "160x120", "fps": 25, "codec": "h264"}}}), now)
    agent.drain_events(now)


def test_results_carry_wall_time_and_are_resent_on_the_monotonic_clock(tmp_path: Path,
                                                                       clocks: tuple[Clock, Clock]) -> None:
    mono, wall = clocks
    agent = make_agent(tmp_path, clocks)
    try:
        welcome(agent, mono())
        run_null_job(agent, "j1", mono())
        body, sent_at = agent.unacked[("j1", 1)]
        assert body["at"] == wall.now and sent_at == mono.now
        wall.now -= 300  # the system clock steps back: nothing here may wait for it
        mono.now += 2.0
        agent.core.results.take_due()
        agent.keep_alive(mono.now)
        assert agent.unacked[("j1", 1)][1] == mono.now, "resent after RESULT_RESEND_INTERVAL of monotonic time"
    finally:
        agent.shutdown()


def test_a_wall_clock_step_neither_ends_the_lease_nor_the_drain(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:
    mono, wall = clocks
    agent = make_agent(tmp_path, clocks, drain_timeout=60)
    try:
        welcome(agent, mono())
        attempt = Attempt(job="j1", attempt=1, spec={"engine": "ffmpeg"}, received_at=mono())
        agent.attempts["j1"] = attempt
        agent.request_stop()
        agent.check_stop(mono())
        wall.now += 3600
        mono.now += 5
        agent.keep_alive(mono.now)
        agent.check_stop(mono.now)
        assert not attempt.cancel.is_set()
    finally:
        agent.attempts.clear()
        agent.shutdown()


def test_the_lease_stops_running_attempts_after_node_timeout_of_master_silence(
        tmp_path: Path, clocks: tuple[Clock, Clock], frozen_master: str) -> None:
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks, master=frozen_master)
    try:
        welcome(agent, mono(), node_timeout=4.0)
        attempt = Attempt(job="j1", attempt=1, spec={"engine": "ffmpeg"}, received_at=mono())
        agent.attempts["j1"] = attempt
        mono.now += 3.0
        agent.on_frame(encode(Kind.HEARTBEAT, {"pending": 0}), mono.now)  # the master still answers
        mono.now += 3.9
        agent.keep_alive(mono.now)
        assert not attempt.cancel.is_set(), "heard from the master 3.9 s ago: the lease holds"
        mono.now += 0.2
        agent.keep_alive(mono.now)
        assert attempt.cancel.is_set() and attempt.cancel_reason.startswith("worker lost its master")
        agent.core.jobs.finish("j1", 1, {"status": "canceled", "error": attempt.cancel_reason}, 0.0, mono.now)
        body = agent.unacked[("j1", 1)][0]
        assert (body["status"], body["failure"]) == ("failed", "worker_lost"), "its result is kept to report"
    finally:
        agent.attempts.clear()
        agent.shutdown()


def test_a_stop_without_a_master_exits_3_naming_the_results_and_keeps_them(tmp_path: Path,
                                                                          clocks: tuple[Clock, Clock]) -> None:
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks, deliver_timeout=5)
    welcome(agent, mono())
    run_null_job(agent, "job-one", mono())
    agent.request_stop()
    agent.check_stop(mono())
    mono.now += 4.9
    agent.check_stop(mono.now)  # still offering the result
    mono.now += 0.2
    with pytest.raises(WorkerExit) as done:
        agent.check_stop(mono.now)
    agent.shutdown()
    assert done.value.code == 3
    assert "job job-one attempt 1 completed" in str(done.value) and "undelivered" in str(done.value)
    again = make_agent(tmp_path, clocks)
    try:
        assert ("job-one", 1) in again.unacked, "a worker started again reports what the last one kept"
        assert {"job": "job-one", "attempt": 1} in again.hello_body()["running"]
        welcome(again, mono.now)
        again.on_frame(encode(Kind.ACK, {"job": "job-one", "attempt": 1}), mono.now)
        assert again.spool.load() == []
    finally:
        again.shutdown()


def test_a_drain_whose_results_are_acknowledged_exits_0(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks)
    try:
        welcome(agent, mono())
        run_null_job(agent, "j1", mono())
        agent.request_stop()
        agent.check_stop(mono())
        agent.on_frame(encode(Kind.ACK, {"job": "j1", "attempt": 1}), mono())
        with pytest.raises(WorkerExit) as done:
            agent.check_stop(mono())
        assert done.value.code == 0 and str(done.value).startswith("drained")
    finally:
        agent.shutdown()


def test_a_second_stop_request_exits_within_force_wait(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks)
    attempt = Attempt(job="j1", attempt=1, spec={"engine": "ffmpeg"}, received_at=mono())
    agent.attempts["j1"] = attempt
    agent.request_stop()
    agent.request_stop()
    agent.check_stop(mono())
    assert attempt.cancel.is_set()
    mono.now += FORCE_WAIT
    with pytest.raises(WorkerExit) as done:
        agent.check_stop(mono.now)
    agent.attempts.clear()
    agent.shutdown()
    assert "killed before they reported: job j1 attempt 1" in str(done.value)


def test_a_master_that_is_down_keeps_the_lease_for_its_restart(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks, master=refused_address())
    try:
        welcome(agent, mono(), node_timeout=4.0)
        attempt = Attempt(job="j1", attempt=1, spec={"engine": "ffmpeg"}, received_at=mono())
        agent.attempts["j1"] = attempt
        mono.now += 4.1
        agent.keep_alive(mono.now)
        assert not attempt.cancel.is_set(), "nothing gives it away while no master runs"
        assert agent.lease.silent_for(mono.now) == 0.0
    finally:
        agent.attempts.clear()
        agent.shutdown()


def test_a_result_kept_at_exit_before_its_output_was_accepted_says_the_output_is_gone(tmp_path: Path) -> None:
    from tests.test_publish import Worker

    worker = Worker(tmp_path / "work")
    files = worker.complete("j1", 1, b"attempt 1")  # completed, waiting for the master to accept its file
    worker.agent.shutdown()
    [kept] = worker.agent.spool.load()
    assert not Path(files.partial).exists() and not Path(files.final).exists()
    assert (kept["status"], kept["failure"], kept["output"]) == ("failed", "worker_lost", None)
    assert "partial" not in kept and "before the master accepted" in kept["error"]
