"""The master while its store cannot be written (disk full or failing): stay up, refuse writes, keep the cluster.

Two entry points, both called by the coordinator with its state. `batch_failed`: a batch (or tick) met a
write fault and was rolled back, so what it would have sent is dropped, its requests are told the store is
unavailable, and the in-memory attempts are put back in line with the store. `handle_batch`: a batch that
arrives while degraded.
Nodes stay alive and their heartbeats are answered (their progress kept in memory), reads are served, and
every write is refused with `StoreUnavailable` (exit 5). Worker reports are not acknowledged, so workers send
them again once the store is back (see `StoreHealth.writable`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ffrtmp.errors import ProtocolError
from ffrtmp.master import handlers
from ffrtmp.master.client_gate import on_request
from ffrtmp.master.lifecycle import timeout_of
from ffrtmp.master.nodes import NodeSession
from ffrtmp.master.operations import READ_ONLY
from ffrtmp.master.state import MasterState
from ffrtmp.master.store import STORE_ERRORS, WriteFault
from ffrtmp.protocol import Kind, Message, decode, unbatch

log = logging.getLogger("ffrtmp.master")

Frames = list[tuple[bytes, bytes]] | list[tuple[bytes, bytes, str | None]]


def _messages(frame: bytes) -> list[Message]:
    try:
        message = decode(frame)
        return unbatch(message) if message.kind is Kind.BATCH else [message]
    except ProtocolError:
        return []


def _refuse(state: MasterState, route: bytes, message: Message, now: float) -> None:
    error = state.store_health.refusal(state.clock.mono)
    state.outbox.send(route, Kind.REPLY, {"rid": message.body["rid"][:64], "status": error.status,
                                          "error": str(error)})


def batch_failed(state: MasterState, frames: Frames, exc: WriteFault, now: float) -> None:
    """The batch was rolled back: nothing of it was stored, so nothing of it may be sent or believed."""
    state.outbox.clear()  # and its acknowledgements: the workers send those results again
    state.logbook.forget_uncommitted()  # and those log lines: none of them is acknowledged
    state.lifecycle.endings.clear()
    state.store_health.failed(exc.cause, state.clock.mono)
    for route, frame, *_ in frames:
        for message in _messages(frame):
            if message.kind is Kind.REQUEST:
                _refuse(state, route, message, now)
            elif message.kind is Kind.HELLO:
                _unwelcome(state, route)
    try:
        resync_attempts(state, now)
    except STORE_ERRORS as exc:
        # The store cannot be read either (a lost database server): resync before writes resume.
        log.warning("the store cannot be read to resync the attempts (%s); retrying when it is back", exc)
        state.store_health.before_retry = lambda: resync_attempts(state, state.clock.wall)
    state.due.soon()


def _unwelcome(state: MasterState, route: bytes) -> None:
    """A join that was rolled back: its WELCOME was never sent, so nothing may be sent to that connection
    (the worker says HELLO again until it is welcomed)."""
    name = state.registry.unroute(route)
    session = state.registry.get(name) if name is not None else None
    if session is not None and session.route == route:
        session.route = None
        session.status = "offline"


def resync_attempts(state: MasterState, now: float) -> None:
    """Make every node's attempts those the store calls active again (the batch changed them in memory only).

    Attempts dispatched in the rolled-back batch were never sent: forgotten. Attempts it ended (results,
    stops) are active again; their workers report them again. A stop still being confirmed is kept.
    """
    active: dict[str, dict[str, Mapping[str, object]]] = {}
    for row in state.store.active_attempts():
        active.setdefault(str(row["node"]), {})[str(row["job_id"])] = row
    for name, session in state.registry.nodes.items():
        stored = active.pop(name, {})
        for job_id, held in list(session.attempts.items()):
            if job_id in stored and stored[job_id]["attempt"] == held.attempt:
                held.stopping = False  # a stop decided in the rolled-back batch did not happen
            elif not held.stopping:
                state.registry.release(session, job_id)
        _add_missing(state, session, stored, now)
    for name, stored in active.items():  # a node the batch made the master forget
        session = NodeSession(name=name, fingerprint="", route=None, slots=1, engines=frozenset(),
                              status="offline", last_seen=now)
        state.registry.adopt(session)
        _add_missing(state, session, stored, now)


def _add_missing(state: MasterState, session: NodeSession, stored: dict[str, Mapping[str, object]],
                 now: float) -> None:
    for job_id, row in stored.items():
        attempt = int(row["attempt"])  # type: ignore[call-overload]
        if not session.runs(job_id, attempt):
            params = row["params"] if isinstance(row["params"], dict) else {}
            timeout = row["timeout"] if isinstance(row["timeout"], int | float) else None
            session.add(job_id, attempt, now, str(row["queue"]), timeout_of(timeout, params),
                        tenant=str(row["tenant"]), mono=state.clock.mono)


def handle_batch(state: MasterState, frames: Frames, now: float) -> None:
    """A batch while the store cannot be written: keep nodes alive, answer reads, refuse writes."""
    for route, frame, *sender in frames:
        state.sender = sender[0] if sender else None
        for message in _messages(frame):
            session = state.registry.session_of(route)
            if session is not None:
                # Expiry reads heard_at (monotonic): a node heard from while the store is down is alive.
                session.last_seen, session.heard_at = now, state.clock.mono
            if message.kind is Kind.REQUEST:
                _request(state, route, message, now)
            elif message.kind is Kind.HEARTBEAT and session is not None:
                _heartbeat(state, route, session, message, now)


def _request(state: MasterState, route: bytes, message: Message, now: float) -> None:
    if message.body.get("op") not in READ_ONLY:
        _refuse(state, route, message, now)
        return
    queued = len(state.outbox.frames)
    try:
        on_request(state, route, message, now)
    except STORE_ERRORS as exc:
        del state.outbox.frames[queued:]
        log.warning("a read failed while the store is degraded: %s", exc)
        _refuse(state, route, message, now)


def _figures(item: dict[str, object]) -> dict[str, object]:
    """A heartbeat item's progress figures, as `handlers._record_progress` takes them."""
    figures = {k: item[k] for k in ("frames", "fps", "speed", "out_time", "bitrate", "size")
               if isinstance(item.get(k), int | float) and not isinstance(item.get(k), bool)}
    progress = item.get("progress")
    return {"progress": min(1.0, max(0.0, float(progress))) if isinstance(progress, int | float) else None,
            **figures}


def _heartbeat(state: MasterState, route: bytes, session: NodeSession, message: Message, now: float) -> None:
    """Progress of the node's attempts, in memory only (no attempt looks stalled once the store is back)."""
    jobs = message.body.get("jobs", [])
    for item in jobs if isinstance(jobs, list) else []:
        if isinstance(item, dict) and isinstance(item.get("job"), str):
            held = session.attempts.get(item["job"])
            if held is not None and held.attempt == item.get("attempt"):
                held.advance(_figures(item), state.clock.mono)
    try:
        pending = handlers.pending_for(state, session)
    except STORE_ERRORS:
        pending = 1  # unknown: a --burst worker must not stop because of it
    state.outbox.send(route, Kind.HEARTBEAT, {"pending": pending})
