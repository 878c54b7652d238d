"""A job's way through its attempts, as the store records it: started, failed (retried or not), ended, stopped.

Every transition goes through the store first and then frees (or keeps) the attempt's slot in the registry,
tells the observers and followers, and says when the next dispatch pass is due. No socket and no clock read:
the caller's clocks are in `clock`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ffrtmp import defaults
from ffrtmp.failures import Failure
from ffrtmp.jobspec import default_timeout
from ffrtmp.master.activity import Activity
from ffrtmp.master.clock import Clock, DispatchDue
from ffrtmp.master.counters import Counters
from ffrtmp.master.logbook import Logbook
from ffrtmp.master.nodes import AttemptState, NodeSession
from ffrtmp.master.observer import Observers
from ffrtmp.master.outbox import Outbox
from ffrtmp.master.recovery import RetryPolicy
from ffrtmp.master.registry import NodeRegistry
from ffrtmp.master.store import Ending, JobRow, Store
from ffrtmp.master.store.health import WriteFault

log = logging.getLogger("ffrtmp.master")


def attempt_context(job: str, attempt: int, node: str) -> dict[str, Any]:
    """The `extra` of a log line about one attempt (see ffrtmp.logsetup)."""
    return {"job": job, "attempt": attempt, "node": node}


def timeout_of(timeout: float | None, params: Any) -> float:
    """The job's own timeout, or the one derived from its duration (as the worker derives it)."""
    if timeout:
        return float(timeout)
    duration = params.get("duration") if isinstance(params, dict) else None
    return default_timeout(float(duration) if isinstance(duration, int | float) else defaults.DEFAULT_DURATION)


class Lifecycle:
    def __init__(self, store: Store, registry: NodeRegistry, outbox: Outbox, logbook: Logbook, *, clock: Clock,
                 due: DispatchDue, observer: Observers, activity: Activity, policy: RetryPolicy,
                 rng: random.Random, counters: Counters) -> None:
        self.store = store
        self.registry = registry
        self.outbox = outbox
        self.logbook = logbook
        self.clock = clock
        self.due = due
        self.observer = observer
        self.activity = activity
        self.policy = policy
        self.rng = rng
        self.counters = counters
        self.endings: list[tuple[Ending, NodeSession, AttemptState]] = []
        """Jobs that ended in the frame being handled, recorded together when it is done (`finish_pending`),
        with the node and attempt state they were taken from."""

    def attempt_failed(self, session: NodeSession, job_id: str, attempt: int, failure: Failure, error: str,
                       now: float, metrics: dict[str, Any] | None = None) -> None:
        """Retry the attempt when its failure allows and budget is left, else fail the job for good."""
        self.registry.release(session, job_id)
        job = self.store.get_job(job_id)
        if job is None or job["attempts"] != attempt or job["status"] not in ("assigned", "running"):
            return
        steady = self.clock.steady
        not_before = self.policy.next_try(failure, attempt, job["max_retries"], steady, self.rng)
        self.observer.attempt_failed(job_id, attempt, session.name, failure, error, not_before, now)
        if not_before is None:
            finished = self.store.finish_job(job_id, attempt, "failed", now, error=error, failure=failure,
                                             metrics=metrics)
            if finished is not None:
                self.job_finished(finished)
            log.info("job %s attempt %d failed for good on %s: %s: %s", job_id, attempt, session.name, failure,
                     error, extra=attempt_context(job_id, attempt, session.name))
            return
        self.store.requeue_job(job_id, attempt, now, failure=failure, error=error, not_before=not_before,
                               avoid=session.name)
        self.counters.retries += 1
        self.due.at(not_before)
        log.info("job %s attempt %d on %s: %s (%s); retry %s", job_id, attempt, session.name, failure, error,
                 "now" if not_before <= steady else f"in {not_before - steady:.1f}s",
                 extra=attempt_context(job_id, attempt, session.name))
        self.due.soon()

    def job_started(self, job_id: str, attempt: int, at: float) -> None:
        """The attempt runs: record it (once) and tell the observers."""
        job = self.store.mark_running(job_id, attempt, at)
        if job is not None:
            self.observer.job_running(job, at)

    def finish_later(self, ending: Ending, session: NodeSession) -> None:
        """A job ended (completed or canceled on its worker): its slot is free now, and its end is recorded
        with the rest of its frame's endings."""
        held = session.attempts[ending.job_id]  # the caller checked that the node runs it
        self.registry.release(session, ending.job_id)
        self.endings.append((ending, session, held))

    def finish_pending(self) -> None:
        """Record the endings gathered from one frame, in one go (a worker reports hundreds of short jobs at once).

        Should that fail, each is tried on its own, so a bad one costs itself only (and is retried: see
        `_finish_alone`).
        """
        pending, self.endings = self.endings, []
        if not pending:
            return
        endings = [ending for ending, _, _ in pending]
        try:
            with self.store.savepoint():
                finished = self.store.finish_jobs(endings)
        except WriteFault:
            raise
        except Exception:
            log.exception("recording %d job endings together failed; recording them one by one", len(endings))
            finished = [self._finish_alone(*one) for one in pending]
        for ending, job in zip(endings, finished, strict=True):
            if job is None:
                continue
            try:  # recorded already: a bug in telling followers and observers must not undo it, or stop us
                if ending.started_at is not None:
                    self.observer.job_running(job, ending.started_at)
                self.job_finished(job)
            except Exception:
                log.exception("job %s ended, but telling its followers and observers failed", ending.job_id,
                              extra=attempt_context(ending.job_id, ending.attempt, ""))

    def _finish_alone(self, ending: Ending, session: NodeSession, state: AttemptState) -> JobRow | None:
        try:
            with self.store.savepoint():
                return self.store.finish_jobs([ending])[0]
        except WriteFault:
            raise
        except Exception:
            # Its node holds the attempt again: since the worker no longer runs it, the next heartbeats
            # find it gone and it is retried like any lost attempt, rather than left running forever.
            log.exception("job %s attempt %d: its end could not be recorded; it will be retried", ending.job_id,
                          ending.attempt, extra=attempt_context(ending.job_id, ending.attempt, session.name))
            if ending.job_id not in session.attempts:
                self.registry.hold(session, ending.job_id, state)
            return None

    def job_finished(self, job: Mapping[str, Any] | str) -> None:
        """A job reached completed, failed or canceled (its row, or its id): tell its followers and observers."""
        if isinstance(job, str):
            found = self.store.get_job(job)
            if found is None:
                return
            job = found
        self.logbook.job_ended(job)
        self.activity.record(job["status"], job["finished_at"] or time.time(), job["tenant"])
        self.observer.job_finished(job, time.time())

    def node_gone(self, session: NodeSession, now: float, reason: str) -> None:
        """The node is offline: its live attempts are retried (or fail), its slots and connection are gone."""
        for job_id, attempt in session.running.items():
            self.attempt_failed(session, job_id, attempt, Failure.WORKER_LOST, reason, now)
        route = self.registry.disconnect(session)
        if route is not None:
            self.logbook.forget_route(route)
        self.store.update_node(session.name, status="offline", last_seen=session.last_seen)
        self.due.soon()

    def stop_attempt(self, session: NodeSession, job_id: str, failure: Failure, error: str, now: float) -> None:
        """Fail the attempt now and tell its worker to kill it; its slot stays taken until the worker confirms."""
        state = session.attempts[job_id]
        log.warning("job %s attempt %d on %s: %s (%s): stopping it", job_id, state.attempt, session.name, failure,
                    error, extra=attempt_context(job_id, state.attempt, session.name))
        if session.route is not None:
            self.outbox.cancel(session.route, job_id, state.attempt)
        self.attempt_failed(session, job_id, state.attempt, failure, error, now)
        self.registry.hold(session, job_id, state)
        state.stopping = True

    def jobs_undeliverable(self, route: bytes, job_ids: list[str]) -> Callable[[], None]:
        """What to do when the JOB frame for these jobs cannot reach `route`: each attempt is lost."""
        def recover() -> None:
            session = self.registry.session_of(route)
            for job_id in job_ids:
                state = session.attempts.get(job_id) if session is not None else None
                if session is not None and state is not None:
                    self.attempt_failed(session, job_id, state.attempt, Failure.WORKER_LOST,
                                        "the worker could not be reached", self.clock.wall)

        return recover
