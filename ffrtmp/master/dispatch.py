"""Dispatch: pending jobs onto free slots, in the order of SPEC §3, without head-of-line blocking.

Placement itself is pure (scheduler.place); this module feeds it the candidates (with tenant running quotas
applied), records why the rest wait, claims the picks in bulk and sends each worker its JOBs in one frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ffrtmp.master.auth import quotas
from ffrtmp.master.scheduler import place
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, encode_batch

if TYPE_CHECKING:
    from ffrtmp.master.coordinator import Coordinator

SPEC_FIELDS = ("scenario", "engine", "queue", "priority", "params", "labels", "timeout", "tenant")
"""What a JOB message tells the worker about the job."""
DISPATCH_SCAN_LIMIT = 5000
"""Pending jobs one dispatch pass looks at, at most, past jobs that no free node can run."""


def dispatch_pass(coordinator: Coordinator, now: float) -> None:
    """One pass: read pending jobs in order, place them (pure), claim the picks in bulk, send the JOBs."""
    nodes = [s.view() for s in coordinator.nodes.values() if s.status != "offline"]
    free = sum(n.free for n in nodes)
    if free <= 0:
        return
    candidates = coordinator.store.pending_candidates(now, limit=DISPATCH_SCAN_LIMIT, aged_before=(
        now - coordinator.config.max_wait if coordinator.config.max_wait is not None else None))
    examined: list[dict[str, Any]] = []
    room = tenant_room(coordinator)
    held: dict[str, str] = {}

    def tracked() -> Iterator[dict[str, Any]]:
        for job in candidates:
            examined.append(job)
            tenant = job["tenant"]
            if tenant in room:
                if room[tenant] <= 0:  # the tenant runs as many jobs as its quota allows
                    held[job["id"]] = f"tenant {tenant!r} is at its running quota"
                    continue
                room[tenant] -= 1  # counted as soon as offered: at worst one pass under-fills
            yield job

    assignments, reasons = place(tracked(), nodes)
    candidates.close()
    reasons.update(held)
    for job in examined:
        reason = reasons.get(job["id"])
        if reason is not None and reason != job["reason"]:
            coordinator.store.set_wait_reason(job["id"], reason)
    if not assignments:
        return
    rows = {job["id"]: job for job in examined}
    picks = [(rows[job_id], node_name) for job_id, node_name in assignments]
    outgoing: dict[bytes, list[tuple[Kind, dict[str, Any]]]] = {}
    for (job, node_name), attempt in zip(picks, coordinator.store.assign_jobs(picks, now), strict=True):
        job_id, session = job["id"], coordinator.nodes[node_name]
        spec = {key: job[key] for key in SPEC_FIELDS}
        coordinator.observer.job_assigned(job_id, attempt, node_name, now)
        session.add(job_id, attempt, now, job["queue"], coordinator.timeout_of(job["timeout"], job["params"]),
                    tenant=job["tenant"])
        assert session.route is not None
        body: dict[str, Any] = {"job": job_id, "attempt": attempt, "spec": spec}
        trace = coordinator.observer.trace_carrier(job_id)
        if trace:
            body["trace"] = trace
        outgoing.setdefault(session.route, []).append((Kind.JOB, body))
    for route, jobs in outgoing.items():  # one frame per worker per pass
        for start in range(0, len(jobs), MAX_BATCH_ITEMS):
            chunk = jobs[start:start + MAX_BATCH_ITEMS]
            lost = coordinator.jobs_undeliverable(route, [body["job"] for _, body in chunk])
            coordinator.queue(route, encode_batch(chunk), lost)


def tenant_room(coordinator: Coordinator) -> dict[str, int]:
    """Running slots each tenant with a running quota may still fill."""
    limits = {name: quota["max_running"] for name, quota in quotas(coordinator.store).items()
              if quota["max_running"] is not None}
    if not limits:
        return {}
    for session in coordinator.nodes.values():
        for state in session.attempts.values():
            if state.tenant in limits and not state.stopping:
                limits[state.tenant] -= 1
    return limits
