"""Recall: a prefetched attempt waiting behind a long job goes to a node that has a free slot.

Prefetch (`--prefetch`, 1 by default) lets a worker hold a job it has not started, so that the next one
starts the moment a slot frees instead of a round trip later. Placement prefers a free slot to a prefetch
queue, but it cannot see the future: with every slot busy a job is queued on a node whose encode may run an
hour more, and a moment later another node frees a slot and idles while the job waits (Celery's well-known
prefetch trap). Here the master notices that, and asks the holding worker to hand the attempt back (a CANCEL
with `recall`); the worker answers with a refused RESULT if it has not started it yet, and the job is
requeued at once without using a retry, avoiding its old node. A job the worker started meanwhile keeps
running: a recall never stops work.
"""

from __future__ import annotations

import logging

from ffrtmp.master.scheduler import NodeView, why_not
from ffrtmp.master.state import MasterState
from ffrtmp.protocol import Kind

log = logging.getLogger("ffrtmp.master")

RECHECK = 5.0
"""Seconds a look that found no idle node to fit a held job holds while the idle nodes stay the same (each look
reads the job from the store: ten reads a second per held job, on a master whose idle node runs other engines)."""
RECALL_AFTER = 1.0
"""Seconds an attempt must have waited prefetched before it is recalled: at full load slots free and fill
every few milliseconds, and a recall then would only add a round trip to a job about to start."""


def recall_waiting(state: MasterState, mono: float) -> int:
    """Ask for the prefetched attempts that a node with a free slot could run now; how many were asked for."""
    holders = [s for s in state.registry if s.recalls and s.route is not None and s.queued > 0]
    if not holders:
        return 0
    idle = [view for view in state.registry.views() if view.accepting and view.active < view.slots]
    if not idle:
        return 0
    asked = 0
    for session in holders:
        for job_id, held in list(session.attempts.items()):
            if not held.queued or held.recalled or held.stopping or held.queued_since is None \
                    or mono - held.queued_since < RECALL_AFTER:
                continue
            elsewhere = [view for view in idle if view.name != session.name]
            others = frozenset(view.name for view in elsewhere)
            if others <= held.unfit and mono < held.unfit_until:
                continue  # the same idle nodes it fitted none of a moment ago
            taker = _taker(state, job_id, elsewhere)
            if taker is None:
                held.unfit, held.unfit_until = others, mono + RECHECK
                continue
            taker.active += 1  # counted now, so one free slot draws one recall
            held.recalled = True
            state.counters.recalled += 1
            assert session.route is not None
            state.outbox.send(session.route, Kind.CANCEL, {"job": job_id, "attempt": held.attempt, "recall": True})
            log.info("job %s attempt %d waits prefetched on %s while %s has a free slot: recalled", job_id,
                     held.attempt, session.name, taker.name,
                     extra={"job": job_id, "attempt": held.attempt, "node": session.name})
            asked += 1
            idle = [view for view in idle if view.active < view.slots]
            if not idle:
                return asked
    return asked


def _taker(state: MasterState, job_id: str, idle: list[NodeView]) -> NodeView | None:
    """The node of `idle` (other than the holder) that would run the job (the least loaded that fits), or None."""
    if not idle:
        return None
    job = state.store.get_job(job_id)
    if job is None:
        return None
    fitting = [view for view in idle if why_not(job, view) is None]
    return min(fitting, key=lambda v: (v.active / v.slots, v.cpu, v.name)) if fitting else None
