"""The master's brain: one handler per message kind, event-driven dispatch, and a `tick(now)` for upkeep.

Two clocks (F2/F8): `now`, wall time, for what is stored and shown; `mono`, the monotonic clock, for every
in-memory interval and deadline (node expiry, stalls, timeouts, keep-alives, rate limits, retry and purge
schedules), so a wall-clock step changes none of them. Retry backoffs are stored as `steady` time: the
monotonic clock in wall units, fixed to the wall clock when the master starts. Entry points take both; with
`mono` left out it follows `now` (tests that pin one clock pin both).

No socket here: frames come in through `handle_batch` and go out through the injected `send`, so tests drive
the coordinator with scripted peers and a fixed clock. Each batch is one store transaction; replies and
JOB messages leave only after it commits, so whatever a peer is told is already durable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ffrtmp import defaults
from ffrtmp.errors import Conflict, FfrtmpError, NotAuthorized, NotFound, ProtocolError, ProtocolMismatch, RateLimited
from ffrtmp.failures import Failure
from ffrtmp.jobspec import default_timeout
from ffrtmp.master import degraded, handlers, requests
from ffrtmp.master.activity import Activity
from ffrtmp.master.auth import Authority
from ffrtmp.master.dispatch import NeedsReasons, dispatch_pass
from ffrtmp.master.inbound import InboundGate
from ffrtmp.master.limits import JobLimits
from ffrtmp.master.logbook import Logbook, LogPolicy
from ffrtmp.master.mismatch import MismatchedPeers
from ffrtmp.master.nodes import AttemptState, NodeSession
from ffrtmp.master.observer import Observers
from ffrtmp.master.ratelimit import KIND_OF, RateLimiter
from ffrtmp.master.recovery import RetryPolicy
from ffrtmp.master.store import Ending, JobRow, Store
from ffrtmp.master.store.health import StoreHealth, WriteFault
from ffrtmp.protocol import Kind, Message, decode, encode, encode_batch, unbatch

log = logging.getLogger("ffrtmp.master")

Send = Callable[[bytes, bytes], bool]
TIMEOUT_GRACE = 30.0
"""The master stops an attempt this long after its timeout; the worker's own timeout should fire first."""


@dataclass
class MasterConfig:
    api_key: str | None = None
    max_retries: int = defaults.MAX_RETRIES
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    node_timeout: float = defaults.NODE_TIMEOUT
    scheduler_interval: float = defaults.SCHEDULER_INTERVAL
    stall_timeout: float = defaults.STALL_TIMEOUT
    stall_timeouts: dict[str, float] = field(default_factory=dict)
    """Per-queue stall timeouts (e.g. shorter for `live`); queues not named use `stall_timeout`."""
    max_wait: float | None = None
    """Aging: a job pending longer than this is dispatched before newer, heavier ones. Off when None."""
    forget_offline: float | None = defaults.FORGET_OFFLINE
    """Nodes offline this long, with nothing left running, are forgotten. Never when None."""
    output_roots: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    logs: LogPolicy = field(default_factory=LogPolicy)
    rate_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per-kind (rate per second, burst) overrides of ratelimit.DEFAULT_LIMITS."""
    preauth_rate: float = defaults.PREAUTH_RATE
    """Frames per second read from one peer that is not a joined worker (master/inbound.py)."""
    version: str = ""
    limits: JobLimits = field(default_factory=JobLimits)
    """The largest job this master accepts (size, rate, length, bitrate)."""
    store_min_free: int = defaults.STORE_MIN_FREE
    """Below this much free space on the store's disk the master refuses writes (degraded mode)."""
    submit_key_ttl: float = defaults.SUBMIT_KEY_TTL
    """How long a submit's idempotency key is remembered."""


@dataclass
class Counters:
    """Events worth counting; the metrics module reads them."""

    messages: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    stale: int = 0
    dead_nodes: int = 0
    retries: int = 0
    unroutable: int = 0
    rate_limited: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, tenant) → requests or worker messages refused by the rate limiter."""
    refused_keys: int = 0
    """Messages dropped because the sender's CURVE key is no longer allowed."""
    refused_batches: int = 0
    """BATCH frames dropped because they did not come from a joined worker (clients never batch)."""
    stalled: int = 0
    """Attempts stopped because their progress stopped moving."""
    timed_out: int = 0
    """Attempts stopped past their job's timeout by the master."""


def _context(job: str, attempt: int, node: str) -> dict[str, Any]:
    """The `extra` of a log line about one attempt (see ffrtmp.logsetup)."""
    return {"job": job, "attempt": attempt, "node": node}


class Coordinator:
    def __init__(self, store: Store, config: MasterConfig, send: Send, *, rng: random.Random | None = None) -> None:
        self.store = store
        self.config = config
        self._send = send
        self.rng = rng or random.Random()
        self.nodes: dict[str, NodeSession] = {}
        self.by_route: dict[bytes, str] = {}
        self.counters = Counters()
        self.outbox: list[tuple[bytes, bytes, Callable[[], None] | None]] = []
        self.acks: dict[bytes, list[tuple[Kind, dict[str, Any]]]] = {}
        self.endings: list[tuple[Ending, NodeSession, AttemptState]] = []
        """Jobs that ended in the frame being handled, recorded together when it is done (`finish_pending`),
        with the node and attempt state they were taken from."""
        self.dirty = False
        self.wall = 0.0
        self.mono = 0.0
        """The clocks of the batch or tick being handled (see the module's docstring)."""
        self._steady_offset: float | None = None
        self.next_retry_due: float | None = None
        """In steady time, like stored `not_before`."""
        self.last_maintenance: float | None = None
        self.needs_reasons = NeedsReasons()
        self.tenant_turns: dict[str, int] = {}
        """Jobs dispatched per tenant with pending work: the fair share between tenants (dispatch.fair_order)."""
        self.started_at = time.time()
        self.mismatched = MismatchedPeers()
        self.started_mono = time.monotonic()
        """Uptime is measured on this clock: a wall-clock step must not change it."""
        self._pending_cache: dict[str, int] | None = None
        self.logbook = Logbook(store, config.logs, self.queue)
        self.authority = Authority(store, config.api_key)
        self.limiter = RateLimiter(config.rate_limits)
        self.inbound = InboundGate(config.preauth_rate)
        self.allowed_keys: set[str] | None = None
        """With --allow-keys: the CURVE keys admitted now (checked on every message, so revocation is immediate)."""
        self.sender: str | None = None
        """The CURVE key of the message being handled (None without CURVE)."""
        self.activity = Activity()
        self.purge_due = 0.0
        """Monotonic."""
        self.observer = Observers()
        store.on_commit = self.observer.committed
        self.store_health = StoreHealth(store.directory, config.store_min_free)
        """Degraded mode: while the store's disk is full or failing, writes are refused (see store_health)."""
        self._handlers: dict[Kind, Callable[[Coordinator, bytes, Message, float], None]] = {
            Kind.HELLO: handlers.on_hello,
            Kind.HEARTBEAT: handlers.on_heartbeat,
            Kind.STARTED: handlers.on_started,
            Kind.LOG: handlers.on_log,
            Kind.RESULT: handlers.on_result,
            Kind.BYE: handlers.on_bye,
            Kind.REQUEST: Coordinator.on_request,
        }

    # ---- the loop's entry points ------------------------------------------------------------------

    def set_clocks(self, now: float, mono: float | None) -> None:
        """The clocks of what is handled next; `mono` None follows `now`."""
        self.wall = now
        self.mono = now if mono is None else mono
        if self._steady_offset is None:
            self._steady_offset = now - self.mono

    @property
    def steady(self) -> float:
        """Monotonic time in wall units (fixed to the wall clock at start): what retry backoffs are stored in."""
        return self.mono + (self._steady_offset or 0.0)

    def restore(self, now: float, mono: float | None = None) -> None:
        """After a (re)start: every attempt the store calls active waits for its node to come back.

        A node that does not say HELLO within the node timeout loses those attempts to a retry.
        """
        self.set_clocks(now, mono)
        stored = {row["name"]: row for row in self.store.list_nodes()}
        for attempt in self.store.active_attempts():
            name = attempt["node"]
            session = self.nodes.get(name)
            if session is None:
                row = stored.get(name, {})
                session = NodeSession(name=name, fingerprint=row.get("fingerprint", ""), route=None,
                                      slots=row.get("slots", 1), engines=frozenset(row.get("engines", [])),
                                      status="offline", last_seen=now, heard_at=self.mono)
                self.nodes[name] = session
            session.add(attempt["job_id"], attempt["attempt"], now, attempt["queue"],
                        self.timeout_of(attempt["timeout"], attempt["params"]), tenant=attempt["tenant"],
                        mono=self.mono)
        with self.store.transaction():
            for name, row in stored.items():
                if row["status"] != "offline" and name not in self.nodes:
                    # Seen up to the master's stop, as far as we know: --forget-offline counts from now.
                    self.store.update_node(name, status="offline", last_seen=now)
        for at, status, tenant in self.store.recent_endings(since=now - 60 * self.activity.minutes):
            self.activity.record(status, at, tenant)
        self.dirty = True

    def handle_batch(self, frames: list[tuple[bytes, bytes]] | list[tuple[bytes, bytes, str | None]],
                     now: float, mono: float | None = None) -> None:
        """Frames as (route, frame) or (route, frame, the sender's CURVE key from ZAP)."""
        self.set_clocks(now, mono)
        self._pending_cache = None
        if not self.store_health.writable(self.mono):  # an interval: a stepped wall clock must not stall it
            degraded.handle_batch(self, frames, now)
            self.flush()
            return
        try:
            with self.store.transaction():
                for route, frame, *sender in frames:
                    self.handle_frame(route, frame, now, sender[0] if sender else None)
                if self.dirty:
                    self.dispatch(now)
        except WriteFault as exc:
            degraded.batch_failed(self, frames, exc, now)
        else:
            self.store_health.recovered()
        self.flush()

    def tick(self, now: float, mono: float | None = None) -> None:
        """Upkeep: dead nodes, due retries, and the periodic pass; dispatch when anything changed."""
        self.set_clocks(now, mono)
        if not self.store_health.writable(self.mono):  # an interval: a stepped wall clock must not stall it
            self.logbook.keepalive(self.mono, self._status_of)  # followers keep waiting; nothing else can be written
            self.flush()
            return
        try:
            self._upkeep(now, self.mono)
        except WriteFault as exc:
            degraded.batch_failed(self, [], exc, now)
        self.flush()

    def _upkeep(self, now: float, mono: float) -> None:
        with self.store.transaction():
            self.expire_nodes(mono)
            self.check_attempts(now, mono)
            self.logbook.keepalive(mono, self._status_of)
            if mono >= self.purge_due and not self.logbook.purge(now):
                self.purge_due = mono + self.config.scheduler_interval  # nothing left: look again later
            if self.next_retry_due is not None and self.steady >= self.next_retry_due:
                self.next_retry_due = None
                self.dirty = True
            if self.last_maintenance is None or mono - self.last_maintenance >= self.config.scheduler_interval:
                self.last_maintenance = mono
                self.forget_offline(now)
                self.store.forget_submit_keys(now - self.config.submit_key_ttl)
                self.dirty = True
            if self.dirty:
                self.dispatch(now)

    def admit(self, route: bytes, sender: str | None, nbytes: int, mono: float) -> bool:
        """Before decoding: joined workers always; anyone else within its peer's budget (H4)."""
        return route in self.by_route or self.inbound.admit(sender or route.hex(), nbytes, mono)

    def handle_frame(self, route: bytes, frame: bytes, now: float, sender: str | None = None) -> None:
        try:
            message = decode(frame)
            if message.kind is Kind.BATCH and route not in self.by_route:
                # Only workers batch (results, logs): a batch from anyone else is 1,000 requests for one frame.
                self.counters.refused_batches += 1
                return
            messages = unbatch(message) if message.kind is Kind.BATCH else [message]
        except ProtocolMismatch as exc:
            self.counters.malformed += 1
            self.queue(route, self.mismatched.answer(sender or route, frame, exc))
            return
        except ProtocolError as exc:
            self.counters.malformed += 1
            log.debug("dropped a malformed message: %s", exc)
            self._answer_malformed(route, frame, exc)
            return
        for one in messages:
            self.handle_message(route, one, now, sender)
        self.finish_pending()

    def handle_message(self, route: bytes, message: Message, now: float, sender: str | None) -> None:
        kind = message.kind.value
        self.counters.messages[kind] = self.counters.messages.get(kind, 0) + 1
        handler = self._handlers.get(message.kind)
        if handler is None:
            self.counters.malformed += 1
            return
        if self.allowed_keys is not None and sender not in self.allowed_keys:
            self._refuse_revoked(route, message)
            return
        session = self.session_of(route)
        if session is not None and message.kind is not Kind.HELLO and handlers.revoked(self, route, session, now):
            return
        if session is not None:
            session.last_seen, session.heard_at = now, self.mono
            if message.kind is not Kind.HELLO and self._limited(session.name, "node", "", self.mono):
                return  # a worker flooding the master: dropped (results are resent, heartbeats come again)
        self.sender = sender
        queued, acked = len(self.outbox), len(self.acks.get(route, []))
        try:
            with self.store.savepoint():
                handler(self, route, message, now)
        except WriteFault:
            raise  # the disk, not this message: the whole batch is rolled back
        except FfrtmpError as exc:
            self.counters.malformed += 1
            log.warning("%s from a peer was refused: %s", kind, exc)
        except Exception:
            # A bug must cost one message, never the master: undo its writes and replies, say so, go on.
            del self.outbox[queued:]
            del self.acks.get(route, [])[acked:]  # unacknowledged, the worker sends its result again
            self.counters.malformed += 1
            log.exception("internal error while handling %s; the message was dropped", kind)
            if message.kind is Kind.REQUEST:
                self.queue(route, encode(Kind.REPLY, {"rid": message.body["rid"][:64], "status": 500,
                                                      "error": "internal error in the master (see its log)"}))

    def _refuse_revoked(self, route: bytes, message: Message) -> None:
        self.counters.refused_keys += 1
        if message.kind is Kind.REQUEST:
            self.queue(route, encode(Kind.REPLY, {"rid": message.body["rid"][:64], "status": 401,
                                                  "error": "this client's CURVE key is not (or no longer) allowed"}))

    def _limited(self, key: str, kind: str, tenant: str, now: float) -> float | None:
        wait = self.limiter.check(key, kind, now)
        if wait is not None:
            self.counters.rate_limited[(kind, tenant)] = self.counters.rate_limited.get((kind, tenant), 0) + 1
        return wait

    def _answer_malformed(self, route: bytes, frame: bytes, exc: ProtocolError) -> None:
        """A malformed client request still gets an answer when its request id can be read."""
        import json

        try:
            raw = json.loads(frame)
            rid = raw["b"]["rid"] if raw.get("k") == Kind.REQUEST.value else None
        except Exception:
            rid = None
        if isinstance(rid, str) and len(rid) <= 64:
            self.queue(route, encode(Kind.REPLY, {"rid": rid, "status": 400, "error": f"request: {exc}"}))

    # ---- sending ----------------------------------------------------------------------------------

    def queue(self, route: bytes, frame: bytes, on_fail: Callable[[], None] | None = None) -> None:
        """Send after the current transaction commits; `on_fail` runs (in a new transaction) if it cannot go."""
        self.outbox.append((route, frame, on_fail))

    def ack(self, route: bytes, job_id: str, attempt: int, publish: bool = False) -> None:
        """Acknowledge a RESULT (`publish`: accepted, give the output its final name); a batch's acknowledgements
        to one worker leave as one frame."""
        body: dict[str, Any] = {"job": job_id, "attempt": attempt, **({"publish": True} if publish else {})}
        self.acks.setdefault(route, []).append((Kind.ACK, body))

    def flush(self) -> None:
        for route, acks in self.acks.items():
            self.outbox.append((route, encode_batch(acks), None))
        self.acks = {}
        outbox, self.outbox = self.outbox, []
        failed: list[Callable[[], None]] = []
        for route, frame, on_fail in outbox:
            if not self._send(route, frame):
                self.counters.unroutable += 1
                if on_fail is not None:
                    failed.append(on_fail)
        if failed:
            try:
                with self.store.transaction():
                    for on_fail in failed:
                        on_fail()
                    self.dispatch(self.wall)
            except WriteFault as exc:
                degraded.batch_failed(self, [], exc, self.wall)
            self.flush()

    def jobs_undeliverable(self, route: bytes, job_ids: list[str]) -> Callable[[], None]:
        def recover() -> None:
            session = self.session_of(route)
            for job_id in job_ids:
                state = session.attempts.get(job_id) if session is not None else None
                if session is not None and state is not None:
                    self.attempt_failed(session, job_id, state.attempt, Failure.WORKER_LOST,
                                        "the worker could not be reached", self.wall)

        return recover

    def probe(self, route: bytes) -> bool:
        """True while the connection behind `route` is up (ROUTER_MANDATORY fails a send to a gone peer)."""
        return self._send(route, encode(Kind.HEARTBEAT, {}))

    def session_of(self, route: bytes) -> NodeSession | None:
        name = self.by_route.get(route)
        return self.nodes.get(name) if name is not None else None

    def refuse(self, route: bytes, status: int, error: str) -> None:
        self.queue(route, encode(Kind.REFUSED, {"status": status, "error": error}))

    # ---- failures, dead nodes, dispatch -----------------------------------------------------------

    def attempt_failed(self, session: NodeSession, job_id: str, attempt: int, failure: Failure, error: str,
                        now: float, metrics: dict[str, Any] | None = None) -> None:
        """Retry the attempt when its failure allows and budget is left, else fail the job for good."""
        session.remove(job_id)
        job = self.store.get_job(job_id)
        if job is None or job["attempts"] != attempt or job["status"] not in ("assigned", "running"):
            return
        steady = self.steady
        not_before = self.config.retry.next_try(failure, attempt, job["max_retries"], steady, self.rng)
        self.observer.attempt_failed(job_id, attempt, session.name, failure, error, not_before, now)
        if not_before is None:
            finished = self.store.finish_job(job_id, attempt, "failed", now, error=error, failure=failure,
                                             metrics=metrics)
            if finished is not None:
                self.job_finished(finished)
            log.info("job %s attempt %d failed for good on %s: %s: %s", job_id, attempt, session.name, failure,
                     error, extra=_context(job_id, attempt, session.name))
            return
        self.store.requeue_job(job_id, attempt, now, failure=failure, error=error, not_before=not_before,
                               avoid=session.name)
        self.counters.retries += 1
        self.retry_due(not_before)
        log.info("job %s attempt %d on %s: %s (%s); retry %s", job_id, attempt, session.name, failure, error,
                 "now" if not_before <= steady else f"in {not_before - steady:.1f}s",
                 extra=_context(job_id, attempt, session.name))
        self.dirty = True

    def retry_due(self, when: float) -> None:
        """Make sure a dispatch pass runs at `when` (a backoff ends then)."""
        if self.next_retry_due is None or when < self.next_retry_due:
            self.next_retry_due = when

    def job_started(self, job_id: str, attempt: int, at: float) -> None:
        """The attempt runs: record it (once) and tell the observers."""
        job = self.store.mark_running(job_id, attempt, at)
        if job is not None:
            self.observer.job_running(job, at)

    def finish_later(self, ending: Ending, session: NodeSession) -> None:
        """A job ended (completed or canceled on its worker): its slot is free now, and its end is recorded
        with the rest of its frame's endings."""
        state = session.attempts.pop(ending.job_id)
        self.endings.append((ending, session, state))

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
                              extra=_context(ending.job_id, ending.attempt, ""))

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
                          ending.attempt, extra=_context(ending.job_id, ending.attempt, session.name))
            session.attempts.setdefault(ending.job_id, state)
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
        for job_id, attempt in session.running.items():
            self.attempt_failed(session, job_id, attempt, Failure.WORKER_LOST, reason, now)
        session.attempts.clear()
        if session.route is not None:
            self.by_route.pop(session.route, None)
            self.logbook.forget_route(session.route)
        session.route = None
        session.status = "offline"
        self.store.update_node(session.name, status="offline", last_seen=session.last_seen)
        self.dirty = True

    def expire_nodes(self, mono: float) -> None:
        """Nodes silent for the node timeout (monotonic) are offline; their attempts go back to pending at once."""
        for session in list(self.nodes.values()):
            if session.status == "offline" and not session.attempts:
                continue
            if mono - session.heard_at > self.config.node_timeout:
                if session.status != "offline":
                    self.counters.dead_nodes += 1
                    log.warning("worker %s silent for %.1fs: offline, %d attempt(s) move on", session.name,
                                mono - session.heard_at, len(session.running))
                self.node_gone(session, self.wall, f"{session.name} went silent")

    def forget_node(self, name: str) -> None:
        """Drop an offline node from memory and the store (`nodes forget`); its jobs keep its name."""
        session = self.nodes.get(name)
        if session is not None and (session.status != "offline" or session.attempts):
            raise Conflict(f"node {name!r} is {session.status}" + (f" with {len(session.attempts)} attempt(s) "
                           "still its own" if session.attempts else "") + "; only an offline node can be forgotten"
                           + ("" if session.status == "offline" else " (`nodes drain` it first)"))
        if not self.store.forget_node(name) and session is None:
            raise NotFound(f"no offline node {name!r}")
        self.nodes.pop(name, None)
        log.info("worker %s forgotten", name, extra={"node": name})

    def forget_offline(self, now: float) -> None:
        """Forget the nodes offline longer than --forget-offline (workers that come and go leave no trail)."""
        if self.config.forget_offline is None:
            return
        for name in self.store.offline_nodes(before=now - self.config.forget_offline):
            session = self.nodes.get(name)
            if session is None or (session.status == "offline" and not session.attempts):
                self.forget_node(name)

    def _status_of(self, job_id: str) -> str | None:
        job = self.store.get_job(job_id)
        return job["status"] if job else None

    def check_attempts(self, now: float, mono: float | None = None) -> None:
        """Stop attempts that stalled (no new frames or output time) or ran past their job's timeout (monotonic)."""
        mono = now if mono is None else mono
        for session in self.nodes.values():
            if session.route is None:
                continue
            for job_id, state in list(session.attempts.items()):
                if state.stopping:
                    continue
                stall = self.config.stall_timeouts.get(state.queue, self.config.stall_timeout)
                if mono - state.progress_at > stall:
                    self.counters.stalled += 1
                    self.stop_attempt(session, job_id, Failure.STALLED, f"no progress for {stall:g}s", now)
                elif state.deadline is not None and mono > state.deadline + TIMEOUT_GRACE:
                    self.counters.timed_out += 1
                    self.stop_attempt(session, job_id, Failure.TIMEOUT, f"still running"
                                      f" {mono - state.assigned_mono:.0f}s after dispatch, past its timeout", now)

    def stop_attempt(self, session: NodeSession, job_id: str, failure: Failure, error: str, now: float) -> None:
        """Fail the attempt now and tell its worker to kill it; its slot stays taken until the worker confirms."""
        state = session.attempts[job_id]
        log.warning("job %s attempt %d on %s: %s (%s): stopping it", job_id, state.attempt, session.name, failure,
                    error, extra=_context(job_id, state.attempt, session.name))
        if session.route is not None:
            self.queue(session.route, encode(Kind.CANCEL, {"job": job_id, "attempt": state.attempt}))
        self.attempt_failed(session, job_id, state.attempt, failure, error, now)
        session.attempts[job_id] = state
        state.stopping = True

    def timeout_of(self, timeout: float | None, params: dict[str, Any]) -> float:
        """The job's own timeout, or the one derived from its duration (as the worker derives it)."""
        if timeout:
            return float(timeout)
        duration = params.get("duration") if isinstance(params, dict) else None
        return default_timeout(float(duration) if isinstance(duration, int | float) else defaults.DEFAULT_DURATION)

    def dispatch(self, now: float) -> None:
        """Place pending jobs on free slots (claims in bulk, inside the caller's transaction).

        A failure here undoes this pass only and is logged: the batch's other writes and replies stand.
        """
        self.dirty = False
        queued = len(self.outbox)
        try:
            with self.store.savepoint():
                dispatch_pass(self, now)
        except WriteFault:
            raise
        except Exception:
            del self.outbox[queued:]
            log.exception("dispatch pass failed; it is retried at the next tick")
            self.retry_due(self.steady + 1.0)

    # ---- client requests --------------------------------------------------------------------------

    def on_request(self, route: bytes, message: Message, now: float) -> None:
        body = message.body
        rid, op, args = body["rid"][:64], body["op"], body.get("args", {})
        try:
            try:
                caller = self.authority.authenticate(body.get("key"))
            except NotAuthorized:
                self.inbound.auth_failed(self.sender or route.hex(), self.mono)  # guessing costs its budget
                raise
            self.authority.authorize(caller, op)
            kind = KIND_OF.get(op, "read") if args.get("lines", True) is not False else "read"  # a wait reads
            wait = self._limited(caller.key if caller.key != "-" else (self.sender or route.hex()), kind,
                                 caller.tenant, self.mono)
            if wait is not None:
                raise RateLimited(f"rate limited: too many {kind} requests; retry after {max(wait, 0.01):.2f}s")
            if op in requests.STREAMS:
                requests.STREAMS[op](self, caller, route, rid, args, now)
                return  # the stream sends its own PARTIALs and final REPLY
            reply = {"rid": rid, "status": 200, "body": requests.handle(self, caller, op, args, now)}
        except FfrtmpError as exc:
            reply = {"rid": rid, "status": exc.status, "error": str(exc)}
        self.queue(route, encode(Kind.REPLY, reply))
