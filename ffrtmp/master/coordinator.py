"""The master's loop body: frames in (`handle_batch`), upkeep (`tick`), frames out (`flush`).

Two clocks: `now`, wall time, for what is stored and shown; `mono`, the monotonic clock, for every in-memory
interval and deadline (node expiry, stalls, timeouts, keep-alives, rate limits, retry and purge schedules),
so a wall-clock step changes none of them (see clock.py). Entry points take both; with `mono` left out it
follows `now` (tests that pin one clock pin both).

No socket here: frames come in through `handle_batch` and go out through the injected `send`, so tests drive
the coordinator with scripted peers and a fixed clock. Each batch is one store transaction; replies and
JOB messages leave only after it commits, so whatever a peer is told is already durable.

This module wires the parts (state.py) and alone sends what the outbox holds: a send that fails runs its
recovery and a new dispatch pass here, at the top, so no part below ever calls back up into the loop.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable

from ffrtmp.errors import FfrtmpError, ProtocolError, ProtocolMismatch
from ffrtmp.master import degraded, handlers, upkeep
from ffrtmp.master.activity import Activity
from ffrtmp.master.api_bridge import is_http_sender
from ffrtmp.master.auth import Authority
from ffrtmp.master.client_gate import on_request
from ffrtmp.master.clock import Clock, DispatchDue
from ffrtmp.master.config import MasterConfig
from ffrtmp.master.counters import Counters
from ffrtmp.master.dispatch import dispatch_pass
from ffrtmp.master.inbound import InboundGate
from ffrtmp.master.lifecycle import Lifecycle, timeout_of
from ffrtmp.master.logbook import Logbook
from ffrtmp.master.mismatch import MismatchedPeers
from ffrtmp.master.nodes import NodeSession
from ffrtmp.master.observer import Observers
from ffrtmp.master.outbox import Outbox
from ffrtmp.master.ratelimit import RateLimiter
from ffrtmp.master.recall import recall_waiting
from ffrtmp.master.registry import NodeRegistry
from ffrtmp.master.state import MasterState
from ffrtmp.master.store import Store
from ffrtmp.master.store.health import StoreHealth, WriteFault
from ffrtmp.protocol import Kind, Message, decode, encode, unbatch

__all__ = ["Coordinator", "Counters", "MasterConfig", "Send"]

log = logging.getLogger("ffrtmp.master")

Send = Callable[[bytes, bytes], bool]
Frames = list[tuple[bytes, bytes]] | list[tuple[bytes, bytes, str | None]]


class Coordinator:
    def __init__(self, store: Store, config: MasterConfig, send: Send, *, rng: random.Random | None = None,
                 observer: Observers | None = None) -> None:
        """`observer`: the metrics and tracing of a coordinator this one replaces (a new term's leader)."""
        self.store = store
        self.config = config
        self._send = send
        clock, due, registry, counters = Clock(), DispatchDue(), NodeRegistry(), Counters()
        observer, activity = observer or Observers(), Activity()
        outbox = Outbox(probe=self.probe)
        logbook = Logbook(store, config.logs, outbox.queue)
        lifecycle = Lifecycle(store, registry, outbox, logbook, clock=clock, due=due, observer=observer,
                              activity=activity, policy=config.retry, rng=rng or random.Random(), counters=counters)
        health = StoreHealth(store.directory, config.store_min_free)
        """Degraded mode: while the store's disk is full or failing, writes are refused (see store_health)."""
        self.state = MasterState(
            store=store, config=config, clock=clock, due=due, registry=registry, outbox=outbox,
            lifecycle=lifecycle, logbook=logbook, authority=Authority(store, config.api_key), observer=observer,
            counters=counters, activity=activity, limiter=RateLimiter(config.rate_limits),
            inbound=InboundGate(config.preauth_rate), store_health=health, started_at=time.time())
        self.mismatched = MismatchedPeers()
        self.started_mono = time.monotonic()
        """Uptime is measured on this clock: a wall-clock step must not change it."""
        self.allowed_keys: set[str] | None = None
        """With --allow-keys: the CURVE keys admitted now (checked on every message, so revocation is immediate)."""
        self.last_maintenance: float | None = None
        self.purge_due = 0.0
        """Monotonic."""
        store.on_commit = observer.committed
        self._handlers: dict[Kind, handlers.Handler] = {**handlers.WORKER_HANDLERS, Kind.REQUEST: on_request}

    def forget_volatile_state(self) -> None:
        """Deposed: what it was about to send, the endings it gathered and its nodes came from transactions
        that may be rolled back and from a term that is over: none of it may leave or count again."""
        self.state.outbox.clear()
        self.state.lifecycle.endings.clear()
        self.state.registry.clear()

    # ---- what the server, the metrics and tests read ------------------------------------------------

    @property
    def nodes(self) -> dict[str, NodeSession]:
        return self.state.registry.nodes

    @property
    def counters(self) -> Counters:
        return self.state.counters

    @property
    def logbook(self) -> Logbook:
        return self.state.logbook

    @property
    def authority(self) -> Authority:
        return self.state.authority

    @property
    def observer(self) -> Observers:
        return self.state.observer

    @property
    def store_health(self) -> StoreHealth:
        return self.state.store_health

    @property
    def inbound(self) -> InboundGate:
        return self.state.inbound

    @property
    def started_at(self) -> float:
        return self.state.started_at

    @property
    def dirty(self) -> bool:
        """A dispatch pass is due at the end of this batch or tick."""
        return self.state.due.dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self.state.due.dirty = value

    # ---- the loop's entry points ------------------------------------------------------------------

    def restore(self, now: float, mono: float | None = None) -> None:
        """After a (re)start: every attempt the store calls active waits for its node to come back.

        A node that does not say HELLO within the node timeout loses those attempts to a retry.
        """
        state = self.state
        state.clock.set(now, mono)
        stored = {row["name"]: row for row in self.store.list_nodes()}
        for attempt in self.store.active_attempts():
            name = attempt["node"]
            session = state.registry.get(name)
            if session is None:
                row = stored.get(name, {})
                session = NodeSession(name=name, fingerprint=row.get("fingerprint", ""), route=None,
                                      slots=row.get("slots", 1), engines=frozenset(row.get("engines", [])),
                                      status="offline", last_seen=now, heard_at=state.clock.mono)
                state.registry.adopt(session)
            session.add(attempt["job_id"], attempt["attempt"], now, attempt["queue"],
                        timeout_of(attempt["timeout"], attempt["params"]), tenant=attempt["tenant"],
                        mono=state.clock.mono)
        with self.store.transaction():
            for name, row in stored.items():
                if row["status"] != "offline" and state.registry.get(name) is None:
                    # Seen up to the master's stop, as far as we know: --forget-offline counts from now.
                    self.store.update_node(name, status="offline", last_seen=now)
        for at, status, tenant in self.store.recent_endings(since=now - 60 * state.activity.minutes):
            state.activity.record(status, at, tenant)
        state.due.soon()

    def handle_batch(self, frames: Frames, now: float, mono: float | None = None) -> None:
        """Frames as (route, frame) or (route, frame, the sender's CURVE key from ZAP)."""
        state = self.state
        state.clock.set(now, mono)
        state.pending_cache = None
        if not state.store_health.writable(state.clock.mono):  # an interval: a stepped wall clock must not stall it
            degraded.handle_batch(state, frames, now)
            self.flush()
            return
        try:
            with self.store.transaction():
                for route, frame, *sender in frames:
                    self.handle_frame(route, frame, now, sender[0] if sender else None)
                if state.due.dirty:
                    self.dispatch(now)
        except WriteFault as exc:
            degraded.batch_failed(state, frames, exc, now)
        else:
            state.store_health.recovered()
        self.flush()

    def tick(self, now: float, mono: float | None = None) -> None:
        """Upkeep: dead nodes, due retries, and the periodic pass; dispatch when anything changed."""
        state = self.state
        state.clock.set(now, mono)
        if not state.store_health.writable(state.clock.mono):  # an interval: a stepped wall clock must not stall it
            state.logbook.keepalive(state.clock.mono, self._status_of)  # followers keep waiting; nothing is written
            self.flush()
            return
        try:
            self._upkeep(now, state.clock.mono)
        except WriteFault as exc:
            degraded.batch_failed(state, [], exc, now)
        self.flush()

    def _upkeep(self, now: float, mono: float) -> None:
        state = self.state
        with self.store.transaction():
            upkeep.expire_nodes(state, mono)
            upkeep.check_attempts(state, now, mono)
            recall_waiting(state, mono)
            state.logbook.keepalive(mono, self._status_of)
            if mono >= self.purge_due and not state.logbook.purge(now):
                self.purge_due = mono + self.config.scheduler_interval  # nothing left: look again later
            state.due.reached(state.clock.steady)
            if self.last_maintenance is None or mono - self.last_maintenance >= self.config.scheduler_interval:
                self.last_maintenance = mono
                upkeep.forget_offline(state, now)
                self.store.forget_submit_keys(now - self.config.submit_key_ttl)
                state.due.soon()
            if state.due.dirty:
                self.dispatch(now)

    def _status_of(self, job_id: str) -> str | None:
        return upkeep.status_of(self.state, job_id)

    def admit(self, route: bytes, sender: str | None, nbytes: int, mono: float) -> bool:
        """Before decoding: joined workers always; anyone else within its peer's budget (H4)."""
        return self.state.registry.joined(route) or self.state.inbound.admit(sender or route.hex(), nbytes, mono)

    def handle_frame(self, route: bytes, frame: bytes, now: float, sender: str | None = None) -> None:
        try:
            message = decode(frame)
            if message.kind is Kind.BATCH and not self.state.registry.joined(route):
                # Only workers batch (results, logs): a batch from anyone else is 1,000 requests for one frame.
                self.state.counters.refused_batches += 1
                return
            messages = unbatch(message) if message.kind is Kind.BATCH else [message]
        except ProtocolMismatch as exc:
            self.state.counters.malformed += 1
            self.state.outbox.queue(route, self.mismatched.answer(sender or route, frame, exc))
            return
        except ProtocolError as exc:
            self.state.counters.malformed += 1
            log.debug("dropped a malformed message: %s", exc)
            self._answer_malformed(route, frame, exc)
            return
        for one in messages:
            self.handle_message(route, one, now, sender)
        self.state.lifecycle.finish_pending()

    def handle_message(self, route: bytes, message: Message, now: float, sender: str | None) -> None:
        state = self.state
        kind = message.kind.value
        state.counters.messages[kind] = state.counters.messages.get(kind, 0) + 1
        handler = self._handlers.get(message.kind)
        if handler is None:
            state.counters.malformed += 1
            return
        if self.allowed_keys is not None and sender not in self.allowed_keys and not is_http_sender(sender):
            self._refuse_revoked(route, message)
            return
        session = state.registry.session_of(route)
        if session is not None and message.kind is not Kind.HELLO and handlers.revoked(state, route, session, now):
            return
        if session is not None:
            session.last_seen, session.heard_at = now, state.clock.mono
            if message.kind is not Kind.HELLO and state.limited(session.name, "node", ""):
                return  # a worker flooding the master: dropped (results are resent, heartbeats come again)
        state.sender = sender
        mark = state.outbox.mark(route)
        try:
            with self.store.savepoint():
                handler(state, route, message, now)
        except WriteFault:
            raise  # the disk, not this message: the whole batch is rolled back
        except FfrtmpError as exc:
            state.counters.malformed += 1
            log.warning("%s from a peer was refused: %s", kind, exc)
        except Exception:
            # A bug must cost one message, never the master: undo its writes and replies, say so, go on.
            state.outbox.undo(mark)  # unacknowledged, the worker sends its result again
            state.counters.malformed += 1
            log.exception("internal error while handling %s; the message was dropped", kind)
            if message.kind is Kind.REQUEST:
                state.outbox.send(route, Kind.REPLY, {"rid": message.body["rid"][:64], "status": 500,
                                                      "error": "internal error in the master (see its log)"})

    def _refuse_revoked(self, route: bytes, message: Message) -> None:
        self.state.counters.refused_keys += 1
        if message.kind is Kind.REQUEST:
            self.state.outbox.send(route, Kind.REPLY, {
                "rid": message.body["rid"][:64], "status": 401,
                "error": "this client's CURVE key is not (or no longer) allowed"})

    def _answer_malformed(self, route: bytes, frame: bytes, exc: ProtocolError) -> None:
        """A malformed client request still gets an answer when its request id can be read."""
        try:
            raw = json.loads(frame)
            rid = raw["b"]["rid"] if raw.get("k") == Kind.REQUEST.value else None
        except Exception:
            rid = None
        if isinstance(rid, str) and len(rid) <= 64:
            self.state.outbox.send(route, Kind.REPLY, {"rid": rid, "status": 400, "error": f"request: {exc}"})

    # ---- sending and dispatch -----------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the committed transaction queued; what cannot go runs its recovery, then a new pass."""
        state = self.state
        failed: list[Callable[[], None]] = []
        for route, frame, on_fail in state.outbox.take():
            if not self._send(route, frame):
                state.counters.unroutable += 1
                if on_fail is not None:
                    failed.append(on_fail)
        if failed:
            try:
                with self.store.transaction():
                    for on_fail in failed:
                        on_fail()
                    self.dispatch(state.clock.wall)
            except WriteFault as exc:
                degraded.batch_failed(state, [], exc, state.clock.wall)
            self.flush()

    def probe(self, route: bytes) -> bool:
        """True while the connection behind `route` is up (ROUTER_MANDATORY fails a send to a gone peer)."""
        return self._send(route, encode(Kind.HEARTBEAT, {}))

    def dispatch(self, now: float) -> None:
        """Place pending jobs on free slots (claims in bulk, inside the caller's transaction).

        A failure here undoes this pass only and is logged: the batch's other writes and replies stand.
        """
        state = self.state
        state.due.dirty = False
        queued = len(state.outbox.frames)
        try:
            with self.store.savepoint():
                dispatch_pass(state, now)
        except WriteFault:
            raise
        except Exception:
            del state.outbox.frames[queued:]
            log.exception("dispatch pass failed; it is retried at the next tick")
            state.due.at(state.clock.steady + 1.0)
