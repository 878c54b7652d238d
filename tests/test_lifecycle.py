"""The job lifecycle on its own state: transitions go through the real store, then free (or keep) the slot,
queue what the worker must hear, and say when the next dispatch pass is due."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffrtmp.failures import Failure
from ffrtmp.master.observer import Observer
from ffrtmp.master.outbox import Outbox
from ffrtmp.master.state import MasterState
from ffrtmp.protocol import Kind, decode
from tests.test_coordinator import Cluster


class Seen(Observer):
    def __init__(self) -> None:
        self.failed: list[tuple[str, float | None]] = []
        self.finished: list[str] = []

    def attempt_failed(self, job_id: str, attempt: int, node: str, failure: str, error: str,
                       retry_at: float | None, now: float) -> None:
        self.failed.append((job_id, retry_at))

    def job_finished(self, job: dict[str, Any], now: float) -> None:
        self.finished.append(job["status"])


def running(tmp_path: Path, **config: Any) -> tuple[Cluster, MasterState, str, Seen]:
    """A node running one job: the state, the job, and what the observers were told."""
    cluster = Cluster(tmp_path, **config)
    seen = Seen()
    cluster.coordinator.observer.add(seen)
    job_id = cluster.submit()
    cluster.hello(b"w1", "alpha")
    assert cluster.net.take(b"w1", Kind.JOB)
    state = cluster.coordinator.state
    state.outbox.take()
    return cluster, state, job_id, seen


def queued(outbox: Outbox) -> list[tuple[bytes, Kind, dict[str, Any]]]:
    return [(route, decode(frame).kind, decode(frame).body) for route, frame, _ in outbox.frames]


def test_a_retryable_failure_frees_the_slot_and_owes_a_pass_at_its_backoff(tmp_path: Path) -> None:
    cluster, state, job_id, seen = running(tmp_path)
    alpha = state.registry.nodes["alpha"]
    with state.store.transaction():
        state.lifecycle.attempt_failed(alpha, job_id, 1, Failure.ENCODER_ERROR, "exit 1", cluster.now)
    assert alpha.attempts == {}
    assert cluster.store.get_job(job_id)["status"] == "pending"  # type: ignore[index]
    retry_at = seen.failed[0][1]
    assert retry_at is not None and retry_at > state.clock.steady and state.due.retry_at == retry_at
    assert state.due.dirty and state.counters.retries == 1 and seen.finished == []


def test_without_budget_the_job_fails_for_good_and_observers_hear_it(tmp_path: Path) -> None:
    cluster, state, job_id, seen = running(tmp_path, max_retries=0)
    with state.store.transaction():
        state.lifecycle.attempt_failed(state.registry.nodes["alpha"], job_id, 1, Failure.ENCODER_ERROR, "exit 1",
                                       cluster.now)
    assert cluster.store.get_job(job_id)["status"] == "failed"  # type: ignore[index]
    assert seen.failed == [(job_id, None)] and seen.finished == ["failed"] and state.due.retry_at is None


def test_a_stale_attempt_number_changes_nothing_but_the_slot(tmp_path: Path) -> None:
    cluster, state, job_id, seen = running(tmp_path)
    with state.store.transaction():
        state.lifecycle.attempt_failed(state.registry.nodes["alpha"], job_id, 7, Failure.ENCODER_ERROR, "old",
                                       cluster.now)
    assert cluster.store.get_job(job_id)["status"] == "assigned"  # type: ignore[index]
    assert seen.failed == [] and state.counters.retries == 0


def test_a_stop_queues_a_cancel_and_keeps_the_slot_until_the_worker_confirms(tmp_path: Path) -> None:
    cluster, state, job_id, _ = running(tmp_path)
    alpha = state.registry.nodes["alpha"]
    with state.store.transaction():
        state.lifecycle.stop_attempt(alpha, job_id, Failure.STALLED, "no progress", cluster.now)
    assert queued(state.outbox) == [(b"w1", Kind.CANCEL, {"job": job_id, "attempt": 1})]
    assert alpha.attempts[job_id].stopping and alpha.view().free == 0
    assert cluster.store.get_job(job_id)["status"] == "pending"  # type: ignore[index]


def test_a_gone_node_loses_its_attempts_route_and_row_status(tmp_path: Path) -> None:
    cluster, state, job_id, _ = running(tmp_path)
    alpha = state.registry.nodes["alpha"]
    state.due.dirty = False
    with state.store.transaction():
        state.lifecycle.node_gone(alpha, cluster.now, "alpha left")
    assert alpha.attempts == {} and state.registry.session_of(b"w1") is None and state.due.dirty
    assert cluster.store.get_node("alpha")["status"] == "offline"  # type: ignore[index]
    assert cluster.store.get_job(job_id)["status"] == "pending"  # type: ignore[index]


def test_an_undeliverable_job_is_lost_like_its_worker(tmp_path: Path) -> None:
    cluster, state, job_id, seen = running(tmp_path)
    recover = state.lifecycle.jobs_undeliverable(b"w1", [job_id, "not-on-this-node"])
    with state.store.transaction():
        recover()
    assert seen.failed and seen.failed[0][0] == job_id
    assert state.registry.nodes["alpha"].attempts == {}
