"""Dispatch: pending jobs onto free slots, in dispatch order (docs/design.md), without head-of-line blocking.

Placement itself is pure (scheduler.place); this module feeds it the candidates (with tenant running quotas
applied), records why the rest wait, claims the picks in bulk and sends each worker its JOBs in one frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ffrtmp.master.auth import quotas
from ffrtmp.master.fairness import fair_order, served
from ffrtmp.master.lifecycle import timeout_of
from ffrtmp.master.scheduler import NodeView, place, wait_reason, why_not
from ffrtmp.master.state import MasterState
from ffrtmp.master.store.dispatch import needs_of
from ffrtmp.master.wait_reasons import NEEDS_REASON_CHUNK as NEEDS_REASON_CHUNK  # re-exported
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, encode_batch

SPEC_FIELDS = ("scenario", "engine", "queue", "priority", "params", "labels", "timeout", "tenant")
"""What a JOB message tells the worker about the job."""
def dispatch_pass(state: MasterState, now: float) -> None:
    """One pass: read the head of every lane some free node can take, place them (pure), claim in bulk, send."""
    nodes = state.registry.views()
    if not any(n.free > 0 for n in nodes):
        return
    candidates = read_candidates(state, nodes, now)
    examined: list[dict[str, Any]] = []
    room = tenant_room(state)
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
    reasons.update(held)
    for job in examined:
        reason = reasons.get(job["id"])
        if reason is not None and reason != job["reason"]:
            state.store.set_wait_reason(job["id"], reason)
    if not assignments:
        return
    rows = {job["id"]: job for job in examined}
    picks = [(rows[job_id], node_name) for job_id, node_name in assignments]
    outgoing: dict[bytes, list[tuple[Kind, dict[str, Any]]]] = {}
    for (job, node_name), attempt in zip(picks, state.store.assign_jobs(picks, now), strict=True):
        job_id, session = job["id"], state.registry.nodes[node_name]
        served(state.tenant_turns, job["tenant"])
        spec = {key: job[key] for key in SPEC_FIELDS}
        state.observer.job_assigned(job_id, attempt, node_name, now)
        session.add(job_id, attempt, now, job["queue"], timeout_of(job["timeout"], job["params"]),
                    tenant=job["tenant"], mono=state.clock.mono)
        assert session.route is not None
        body: dict[str, Any] = {"job": job_id, "attempt": attempt, "spec": spec}
        trace = state.observer.trace_carrier(job_id)
        if trace:
            body["trace"] = trace
        outgoing.setdefault(session.route, []).append((Kind.JOB, body))
    for route, jobs in outgoing.items():  # one frame per worker per pass
        for start in range(0, len(jobs), MAX_BATCH_ITEMS):
            chunk = jobs[start:start + MAX_BATCH_ITEMS]
            lost = state.lifecycle.jobs_undeliverable(route, [body["job"] for _, body in chunk])
            state.outbox.queue(route, encode_batch(chunk), lost)


def read_candidates(state: MasterState, nodes: list[NodeView], now: float) -> list[dict[str, Any]]:
    """The head of each lane, as many as the free slots that fit it, in fair order. A requirement group no
    free node can take costs one index probe, and its wait reason is written for its jobs (see NeedsReasons)."""
    open_nodes = [n for n in nodes if n.free > 0]
    room_of: dict[str, int] = {}
    """needs → free slots on the nodes that meet them (0: the group is skipped)."""
    skipped: list[tuple[str, str, tuple[int, int]]] = []
    seqs: list[tuple[int, int]] = []

    def skip(needs: str) -> bool:
        if needs not in room_of:
            wants = needs_of(needs)
            room_of[needs] = sum(n.free for n in open_nodes if why_not(wants, n) is None)
            if room_of[needs] == 0:
                reason = wait_reason(wants, nodes)
                if not seqs:
                    seqs.append(state.store.pending_seqs())
                span = state.needs_reasons.next_range(needs, reason, *seqs[0], state.clock.mono)
                if span is not None:
                    skipped.append((needs, reason, span))
        return room_of[needs] == 0

    heads: list[dict[str, Any]] = []
    for lane in state.store.pending_lanes(skip):
        heads.extend(state.store.lane_head(lane, state.clock.steady, room_of[lane[0]]))
    for needs, reason, span in skipped:
        state.store.set_needs_reason(needs, reason, *span)
    if skipped and state.needs_reasons.unfinished(seqs[0][1]):
        state.due.soon()  # the next tick writes the next chunk
    aged_before = now - state.config.max_wait if state.config.max_wait is not None else None
    return fair_order(heads, aged_before, state.tenant_turns)


def tenant_room(state: MasterState) -> dict[str, int]:
    """Running slots each tenant with a running quota may still fill."""
    limits = {name: quota["max_running"] for name, quota in quotas(state.store).items()
              if quota["max_running"] is not None}
    if not limits:
        return {}
    held = state.registry.held_by_tenant(limits)
    return {tenant: limit - held[tenant] for tenant, limit in limits.items()}
