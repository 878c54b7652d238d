"""The master's part of a job's trace: `job` (submit to end), `queue` (waiting) and `attempt N` spans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ffrtmp.master.observer import Observer
from ffrtmp.tracing import Tracing


class MasterTracer(Observer):
    """Holds a span per unfinished job (so a master restart starts its jobs' later spans in a new trace)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.jobs: dict[str, Any] = {}
        self.queued: dict[str, Any] = {}
        self.attempts: dict[str, tuple[int, Any]] = {}

    def jobs_submitted(self, jobs: list[dict[str, Any]], now: float) -> None:
        for job in jobs:
            span = self.tracing.start("ffrtmp.job", carrier=job.get("trace"), at=now, attributes={
                "ffrtmp.job": job["id"], "ffrtmp.queue": job["queue"], "ffrtmp.priority": job["priority"],
                "ffrtmp.engine": job["engine"]})
            self.jobs[job["id"]] = span
            self.queued[job["id"]] = self.tracing.start("ffrtmp.queue", parent=span, at=now)

    def job_assigned(self, job_id: str, attempt: int, node: str, now: float) -> None:
        queued = self.queued.pop(job_id, None)
        if queued is not None:
            self.tracing.end(queued, at=now)
        parent = self.jobs.get(job_id)
        if parent is None:
            return  # submitted before this master started
        span = self.tracing.start(f"ffrtmp.attempt {attempt}", parent=parent, at=now, attributes={
            "ffrtmp.job": job_id, "ffrtmp.attempt": attempt, "ffrtmp.node": node})
        self.attempts[job_id] = (attempt, span)

    def trace_carrier(self, job_id: str) -> dict[str, str] | None:
        current = self.attempts.get(job_id)
        return self.tracing.carrier(current[1]) if current else None

    def job_running(self, job: Mapping[str, Any], now: float) -> None:
        current = self.attempts.get(job["id"])
        if current is not None:
            current[1].add_event("running", attributes={"ffrtmp.node": job.get("node") or ""})

    def attempt_failed(self, job_id: str, attempt: int, node: str, failure: str, error: str,
                       retry_at: float | None, now: float) -> None:
        current = self.attempts.pop(job_id, None)
        if current is not None:
            self.tracing.end(current[1], at=now, error=f"{failure}: {error}",
                             attributes={"ffrtmp.failure": failure, "ffrtmp.retry": retry_at is not None})
        parent = self.jobs.get(job_id)
        if retry_at is not None and parent is not None:
            self.queued[job_id] = self.tracing.start("ffrtmp.queue", parent=parent, at=now,
                                                     attributes={"ffrtmp.retry_at": retry_at})

    def job_finished(self, job: Mapping[str, Any], now: float) -> None:
        job_id = job["id"]
        error = None if job["status"] == "completed" else f"{job['status']}: {job.get('error') or ''}"
        for spans in (self.queued, self.attempts):
            entry = spans.pop(job_id, None)
            if entry is not None:
                span = entry[1] if isinstance(entry, tuple) else entry
                self.tracing.end(span, at=now, error=error)
        span = self.jobs.pop(job_id, None)
        if span is not None:
            metrics = job.get("metrics") or {}
            self.tracing.end(span, at=now, error=error, attributes={
                "ffrtmp.status": job["status"], "ffrtmp.attempts": job["attempts"],
                **{f"ffrtmp.metrics.{k}": v for k, v in metrics.items()}})
