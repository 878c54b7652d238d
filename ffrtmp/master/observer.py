"""What the coordinator tells observers (metrics, tracing) about jobs, beyond what they can read themselves.

Calls happen on the coordinator's thread inside its transaction, so an observer must be quick and must not
raise; the base class does nothing, and `Observers` fans one call out to several.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Observer:
    def jobs_submitted(self, jobs: list[dict[str, Any]], now: float) -> None:
        """New jobs (id, queue, priority, engine, trace context when the client sent one)."""

    def job_assigned(self, job_id: str, attempt: int, node: str, now: float) -> None:
        """An attempt was sent to a node."""

    def job_running(self, job: Mapping[str, Any], now: float) -> None:
        """A job's current attempt started running (the job row, as stored)."""

    def attempt_failed(self, job_id: str, attempt: int, node: str, failure: str, error: str,
                       retry_at: float | None, now: float) -> None:
        """An attempt ended badly; `retry_at` when the job will be tried again, None when it failed for good."""

    def job_finished(self, job: Mapping[str, Any], now: float) -> None:
        """A job reached completed, failed or canceled (the job row, as stored)."""

    def committed(self, seconds: float) -> None:
        """A store transaction committed in `seconds`."""

    def trace_carrier(self, job_id: str) -> dict[str, str] | None:
        """The W3C trace context to send with the job's current attempt (tracing), if any."""
        return None


class Observers(Observer):
    def __init__(self, *observers: Observer) -> None:
        self.observers = list(observers)

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    def jobs_submitted(self, jobs: list[dict[str, Any]], now: float) -> None:
        for observer in self.observers:
            observer.jobs_submitted(jobs, now)

    def job_assigned(self, job_id: str, attempt: int, node: str, now: float) -> None:
        for observer in self.observers:
            observer.job_assigned(job_id, attempt, node, now)

    def job_running(self, job: Mapping[str, Any], now: float) -> None:
        for observer in self.observers:
            observer.job_running(job, now)

    def attempt_failed(self, job_id: str, attempt: int, node: str, failure: str, error: str,
                       retry_at: float | None, now: float) -> None:
        for observer in self.observers:
            observer.attempt_failed(job_id, attempt, node, failure, error, retry_at, now)

    def job_finished(self, job: Mapping[str, Any], now: float) -> None:
        for observer in self.observers:
            observer.job_finished(job, now)

    def committed(self, seconds: float) -> None:
        for observer in self.observers:
            observer.committed(seconds)

    def trace_carrier(self, job_id: str) -> dict[str, str] | None:
        for observer in self.observers:
            carrier = observer.trace_carrier(job_id)
            if carrier:
                return carrier
        return None
