"""The tick's periodic work on nodes and attempts: silent nodes go offline, stalled or overdue attempts are
stopped, long-offline nodes are forgotten. Each is a function of the state and the clocks it is given."""

from __future__ import annotations

import logging

from ffrtmp.errors import NotFound
from ffrtmp.failures import Failure
from ffrtmp.master.state import MasterState

log = logging.getLogger("ffrtmp.master")

TIMEOUT_GRACE = 30.0
"""The master stops an attempt this long after its timeout; the worker's own timeout should fire first."""


def expire_nodes(state: MasterState, mono: float) -> None:
    """Nodes silent for the node timeout (monotonic) are offline; their attempts go back to pending at once."""
    for session in state.registry:
        if session.status == "offline" and not session.attempts:
            continue
        if mono - session.heard_at > state.config.node_timeout:
            if session.status != "offline":
                state.counters.dead_nodes += 1
                log.warning("worker %s silent for %.1fs: offline, %d attempt(s) move on", session.name,
                            mono - session.heard_at, len(session.running))
            state.lifecycle.node_gone(session, state.clock.wall, f"{session.name} went silent")


def check_attempts(state: MasterState, now: float, mono: float) -> None:
    """Stop attempts that stalled (no new frames or output time) or ran past their job's timeout (monotonic)."""
    config = state.config
    for session in state.registry:
        if session.route is None:
            continue
        for job_id, held in list(session.attempts.items()):
            if held.stopping:
                continue
            stall = config.stall_timeouts.get(held.queue, config.stall_timeout)
            if mono - held.progress_at > stall:
                state.counters.stalled += 1
                state.lifecycle.stop_attempt(session, job_id, Failure.STALLED, f"no progress for {stall:g}s", now)
            elif held.deadline is not None and mono > held.deadline + TIMEOUT_GRACE:
                state.counters.timed_out += 1
                state.lifecycle.stop_attempt(session, job_id, Failure.TIMEOUT, f"still running"
                                             f" {mono - held.assigned_mono:.0f}s after dispatch, past its timeout",
                                             now)


def forget_node(state: MasterState, name: str) -> None:
    """Drop an offline node from memory and the store (`nodes forget`); its jobs keep its name."""
    session = state.registry.forgettable(name)
    if not state.store.forget_node(name) and session is None:
        raise NotFound(f"no offline node {name!r}")
    state.registry.drop(name)
    log.info("worker %s forgotten", name, extra={"node": name})


def forget_offline(state: MasterState, now: float) -> None:
    """Forget the nodes offline longer than --forget-offline (workers that come and go leave no trail)."""
    if state.config.forget_offline is None:
        return
    for name in state.store.offline_nodes(before=now - state.config.forget_offline):
        session = state.registry.get(name)
        if session is None or (session.status == "offline" and not session.attempts):
            forget_node(state, name)


def status_of(state: MasterState, job_id: str) -> str | None:
    job = state.store.get_job(job_id)
    return job["status"] if job else None
