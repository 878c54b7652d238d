"""The worker's protocol state machine, with no socket and no clock of its own.

Time comes in with every call: `now` is the wall clock, which only stamps what the master stores and shows;
`mono` is the monotonic clock, which drives every interval and deadline (so a step of the system clock
changes no timing here). Messages come in decoded (`on_frame(kind, body, now, mono)`, or `receive` for a
raw frame), and go out through the injected `Link` as a kind and a body. A thin loop (`agent.py`) owns the
DEALER socket, the poller and the clocks, and feeds this core; tests drive it with a fake master and a
fixed clock. What it does on each pass (`tick`): hand runners' events on, ship logs, heartbeat, resend
unacknowledged results, reconnect when the master has gone silent, and decide whether to stop (drain, burst).
The attempts themselves (start, prefetch, cancel, end) are `core_jobs.Jobs`; which master of the list to talk
to, and moving on when it is lost or does not lead, is `core_follow.Following`.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ffrtmp import __version__, defaults
from ffrtmp.errors import ProtocolError, ProtocolMismatch
from ffrtmp.masters import not_leader
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, decode, unbatch
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core_follow import Following
from ffrtmp.worker.core_jobs import Jobs
from ffrtmp.worker.core_options import WorkerExit, WorkerOptions
from ffrtmp.worker.core_results import Results
from ffrtmp.worker.lease import MasterLease
from ffrtmp.worker.logship import LogShipper
from ffrtmp.worker.pathmap import visible_prefixes
from ffrtmp.worker.resources import ResourceSampler
from ffrtmp.worker.retention import RetentionSweeper
from ffrtmp.worker.runner import Attempt, Event
from ffrtmp.worker.spool import ResultSpool
from ffrtmp.worker.stopping import StopPlan, Verdict, exit_line

log = logging.getLogger("ffrtmp.worker")

HELLO_RETRY = 2.0
"""Until the master welcomes us, HELLO is resent this often."""
JOIN_POLL = 0.05
"""How often a worker that has not joined yet checks its connection."""
MAX_POLL = 0.5
"""The loop looks at its deadlines at least this often."""


class Link(Protocol):
    """What the core needs from the connection to its master (the loop's socket, or a test's fake master)."""

    def send(self, kind: Kind, body: dict[str, Any]) -> bool:
        """Queue one message; False when it could not be queued (no connection yet)."""
        ...

    def reconnect(self) -> None:
        """Replace the connection, by one to `WorkerCore.address` (the master was lost, or another leads)."""
        ...

    def handshake_error(self) -> str | None:
        """Why the connection's CURVE handshake failed, if it did."""
        ...

    def master_down(self) -> bool:
        """True only when nothing listens at `WorkerCore.address` (a restart, not a partition)."""
        ...

    def wake(self) -> None:
        """Make the loop's wait end now (runner threads call this through `emit`)."""
        ...


Handler = Callable[["WorkerCore", dict[str, Any], float, float], None]


class WorkerCore:
    def __init__(self, options: WorkerOptions, capabilities: Capabilities, link: Link, *, mono: float) -> None:
        self.options = options
        self.capabilities = capabilities
        self.link = link
        self.encoders = capabilities.encoder_map()
        """Built once: capabilities are fixed at start-up; rebuilt per JOB it was 71 % of a busy worker's CPU."""
        self.sampler = ResourceSampler(options.work_dir)
        self.loop_thread: int | None = None
        """The thread that drives the core; events from any other thread wake it up."""
        self.wake_pending = False
        """A runner thread has woken the loop and it has not drained the events since."""
        self.results = Results(ResultSpool(options.work_dir / "undelivered" / options.name))
        self.logs = LogShipper(send_message=link.send)
        self.logs.pause()  # nothing is shipped before the first WELCOME
        self.stop = StopPlan(options.drain_timeout, options.deliver_timeout)
        self.jobs = Jobs(options, capabilities, self.encoders, results=self.results, logs=self.logs, stop=self.stop,
                         send=link.send, emit=self.emit)
        self.silent_for = 0.0
        """How long the master had been silent when this pass's frames arrived (they may be that old)."""
        self.retention = RetentionSweeper(self.jobs.paths.outputs, options.output_retention, self.jobs.files_in_use)
        self.welcomed = False
        self.ever_welcomed = False
        self.lease = MasterLease(options.node_timeout, heard_at=mono)
        self.heartbeat_interval = options.heartbeat_interval
        self.following = Following(options.master, self, link, self.lease, mono)
        self.last_hello = -math.inf
        self.next_heartbeat = 0.0
        self.master_pending: int | None = None
        self.stop_requests = 0
        """Stop requests (signals) not yet acted on: counted here, acted on by `tick` on its own clock."""
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.reconnect_at = 0.0
        self.rng = random.Random()

    @property
    def completed(self) -> int:
        return self.jobs.completed

    @property
    def failed(self) -> int:
        return self.jobs.failed

    @property
    def draining(self) -> bool:
        return self.stop.stopping

    @property
    def attempts(self) -> dict[str, Attempt]:
        """Every attempt this worker holds (see `Jobs.attempts`)."""
        return self.jobs.attempts

    @property
    def address(self) -> str:
        """The master this worker talks to now (of the `--master` list)."""
        return self.following.follower.address

    def connected(self) -> None:
        """A new connection: say HELLO at once, and hold logs until the master welcomes us."""
        self.welcomed = False
        self.logs.pause()
        self.last_hello = -math.inf

    def request_stop(self) -> None:
        """SIGTERM / Ctrl-C (safe from a signal handler): the first drains, the next stops at once."""
        self.stop_requests += 1
        self.link.wake()

    def emit(self, event: Event) -> None:
        """Called from runner threads, and from the loop itself for null jobs (which need no wake-up call)."""
        self.jobs.events.put(event)
        # One wake-up per pass is enough: the loop drains every event queued by then. Cleared by the loop
        # before it drains, so an event put after the drain began wakes it again. (A wake-up per log line
        # ran a pass of the loop per line.)
        if threading.get_ident() != self.loop_thread and not self.wake_pending:
            self.wake_pending = True
            self.link.wake()

    # ---- one pass --------------------------------------------------------------------------------

    def poll_timeout(self, mono: float) -> float:
        """How long the loop may wait for frames before the next deadline here."""
        # Not welcomed yet: look again soon (the connection may come up any moment), without spinning.
        until_beat = self.next_heartbeat - mono if self.welcomed else JOIN_POLL
        until_lease = self.lease.due_in(mono) if self.attempts else math.inf
        return max(0.0, min(until_beat, self.logs.due_in(mono), until_lease, self.stop.due_in(mono),
                            self.following.due_in(mono), MAX_POLL))

    def frames_arriving(self, mono: float) -> None:
        """The loop has frames to hand over: note how stale they may be (see `Results.accepted`)."""
        self.silent_for = self.lease.silent_for(mono)

    def tick(self, now: float, mono: float) -> None:
        self.wake_pending = False
        self.jobs.drain_events(now, mono)
        self.logs.flush(mono)
        self.send_results()
        self.keep_alive(now, mono)
        self.check_stop(now, mono)
        self.retention.maybe_start(mono, now)

    def send_results(self) -> None:
        """Send the results due, many in one frame: with short jobs a worker finishes hundreds a pass."""
        due = self.results.take_due()
        for start in range(0, len(due), MAX_BATCH_ITEMS):
            chunk = due[start:start + MAX_BATCH_ITEMS]
            if len(chunk) == 1:
                self.link.send(Kind.RESULT, chunk[0])
            else:
                self.link.send(Kind.BATCH, {"items": [{"k": Kind.RESULT.value, "b": body} for body in chunk]})

    def keep_alive(self, now: float, mono: float) -> None:
        self.following.watch(mono)
        if self.lease.expired(mono):
            self.lease_expired(now, mono)
        if not self.welcomed:
            error = self.link.handshake_error()
            if error and not self.ever_welcomed:
                raise WorkerExit(3, f"cannot join {self.address}: {error} "
                                    "(check --master-key / FFRTMP_MASTER_KEY)")
            if self.following.follower.waiting(mono):
                return  # no master leads: the list is tried again after a short wait
            # A HELLO that could not even be queued (no connection yet) is retried at once when it comes up.
            if mono - self.last_hello >= HELLO_RETRY and self.link.send(Kind.HELLO, self.hello_body()):
                self.last_hello = mono
            return
        if mono >= self.next_heartbeat:
            self.next_heartbeat = mono + self.heartbeat_interval
            self.link.send(Kind.HEARTBEAT, self.heartbeat_body())
        self.results.resend_stale(mono)
        self.send_results()

    def lease_expired(self, now: float, mono: float) -> None:
        """The master has been silent for the node timeout: it has given our attempts away, so stop them."""
        silent = self.lease.silent_for(mono)
        self.jobs.stop_all(f"worker lost its master: silent for {silent:.0f}s, past the node timeout "
                           f"of {self.lease.node_timeout:g}s, so the master has given this attempt away", now, mono)
        if mono >= self.reconnect_at:
            self.reconnect_at = mono + self.reconnect_delay * self.rng.uniform(0.5, 1.0)
            self.reconnect_delay = min(defaults.RECONNECT_MAX, self.reconnect_delay * 2)
            self.following.lease_expired(mono)

    def hello_body(self) -> dict[str, Any]:
        running = [{"job": a.job, "attempt": a.attempt} for a in self.attempts.values()]
        running += [{"job": job, "attempt": attempt} for job, attempt in self.results.unacked]
        body: dict[str, Any] = {
            "name": self.options.name, "fingerprint": self.options.fingerprint, "version": __version__,
            "slots": self.options.slots, "engines": self.capabilities.engines,
            "encoders": self.encoders, "labels": self.options.labels,
            "resources": self.sampler.sample(), "running": running, "draining": self.draining,
            "prefetch": self.options.prefetch, "sees": self.sees(), "quality": list(self.capabilities.quality),
            "recall": True,
        }
        if self.options.api_key:
            body["key"] = self.options.api_key
        return body

    def sees(self) -> list[str]:
        """The paths this worker can read shared-storage inputs under: the master routes those jobs by it."""
        if self.options.sees is not None:
            return list(self.options.sees)
        return visible_prefixes(self.options.input_roots, self.options.path_maps)

    def heartbeat_body(self) -> dict[str, Any]:
        held = self.jobs.held
        jobs = [{"job": a.job, "attempt": a.attempt, **({"queued": True} if a.job in held else a.progress)}
                for a in self.attempts.values()]
        jobs += [{"job": job, "attempt": attempt} for job, attempt in self.results.unacked]
        return {"jobs": jobs, "resources": self.sampler.sample(), "draining": self.draining}

    # ---- messages from the master -----------------------------------------------------------------

    def receive(self, frame: bytes, now: float, mono: float) -> None:
        """One raw frame from the master: decoded, unbatched and handled message by message."""
        try:
            message = decode(frame)
            messages = unbatch(message) if message.kind is Kind.BATCH else [message]
        except ProtocolMismatch as exc:
            raise WorkerExit(2, exc.sentence("master", "worker")) from None
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the master: %s", exc)
            return
        for one in messages:
            self.on_frame(one.kind, one.body, now, mono)

    def on_frame(self, kind: Kind, body: dict[str, Any], now: float, mono: float) -> None:
        """One message from the master (already checked against its schema)."""
        self.following.heard(mono)
        if kind is Kind.REFUSED and not_leader(body):
            self.following.not_leader(body, mono)  # a standby: it renews no lease
            return
        self.lease.heard(mono)
        self.following.speaking()
        handler = HANDLERS.get(kind)
        if handler is None:
            log.debug("ignored %s from the master", kind.value)
            return
        handler(self, body, now, mono)

    def on_welcome(self, body: dict[str, Any], now: float, mono: float) -> None:
        self.welcomed = self.ever_welcomed = True
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.reconnect_at = 0.0
        self.following.welcomed()
        self.heartbeat_interval = float(body["heartbeat_interval"]) or self.heartbeat_interval
        self.lease.node_timeout = float(body["node_timeout"]) or self.lease.node_timeout
        self.next_heartbeat = mono
        self.logs.resend(mono)  # before the results, so each attempt's lines arrive ahead of its end
        self.results.welcomed(mono, body.get("publish") is True)
        self.jobs.data_channel.welcomed(self.address, body)
        self.send_results()
        log.info("joined %s as %s (%d slots)", self.address, self.options.name, self.options.slots)

    def on_refused(self, body: dict[str, Any], now: float, mono: float) -> None:
        status = body["status"]
        code = {401: 4, 409: 2, 400: 2}.get(status, 2)
        raise WorkerExit(code, f"the master refused this worker: {body['error']}")

    def on_resync(self, body: dict[str, Any], now: float, mono: float) -> None:
        self.connected()

    def on_heartbeat(self, body: dict[str, Any], now: float, mono: float) -> None:
        pending = body.get("pending")
        if isinstance(pending, int):
            self.master_pending = pending
        for item in body.get("logs", []):  # the highest seq the master stored, per attempt
            if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in item[1:])):
                self.logs.ack(item[0], item[1], item[2])

    def on_drain(self, body: dict[str, Any], now: float, mono: float) -> None:
        self.start_drain(now, mono)

    def on_ack(self, body: dict[str, Any], now: float, mono: float) -> None:
        key = (body["job"], body["attempt"])
        if body.get("publish") is True:
            self.results.accepted(key, mono, fresh=self.silent_for <= self.lease.node_timeout / 2)
            return
        self.results.acknowledged(key)
        if self.options.burst and not self.attempts and not self.results.unacked:
            self.master_pending = None  # ask again: the next heartbeat's answer says whether work is left
            self.next_heartbeat = mono

    def on_job(self, body: dict[str, Any], now: float, mono: float) -> None:
        self.jobs.on_job(body, now, mono)

    def on_cancel(self, body: dict[str, Any], now: float, mono: float) -> None:
        self.jobs.on_cancel(body, now, mono)

    # ---- stopping ---------------------------------------------------------------------------------

    def start_drain(self, now: float, mono: float) -> None:
        if not self.stop.stopping:
            self.stop.request(mono)
            self.jobs.hand_back_held(now, mono)
            log.info("draining: no new jobs; %d running will finish (they are stopped after %gs)",
                     len(self.attempts), self.options.drain_timeout)
            self.next_heartbeat = mono

    def check_stop(self, now: float, mono: float) -> None:
        while self.stop_requests:
            self.stop_requests -= 1
            if not self.stop.stopping:
                self.start_drain(now, mono)
            elif self.stop.forced_at is None:
                self.stop.request(mono)
                log.warning("stopping now: %d running attempts are stopped", len(self.attempts))
        if self.stop.attempts_overdue(mono):
            self.jobs.cancel_running("worker shutting down")
        verdict = self.stop.verdict(mono, len(self.attempts), len(self.results.unacked))
        if verdict is Verdict.DRAINED:
            self.link.send(Kind.BYE, {})
            raise WorkerExit(0, f"drained: {self.completed} completed, {self.failed} failed")
        if verdict is Verdict.UNDELIVERED:
            self.link.send(Kind.BYE, {})
            raise WorkerExit(3 if self.results.unacked else 0, self.undelivered_line(mono))
        idle = not self.attempts and not self.results.unacked
        if self.options.burst and self.welcomed and idle and self.master_pending == 0:
            self.link.send(Kind.BYE, {})
            raise WorkerExit(0, f"burst done: {self.completed} completed, {self.failed} failed")

    def undelivered_line(self, mono: float) -> str:
        results = [(job, number, str(body["status"])) for (job, number), (body, _) in self.results.unacked.items()]
        return exit_line(f"stopped: {self.completed} completed, {self.failed} failed", results,
                         [(a.job, a.attempt) for a in self.attempts.values()],
                         f"the master {self.following.follower} (silent for {self.lease.silent_for(mono):.0f}s)",
                         f"kept in {self.results.spool.directory}: the next `ffrtmp worker --name "
                         f"{self.options.name}` with this --work-dir reports them")


HANDLERS: dict[Kind, Handler] = {
    Kind.WELCOME: WorkerCore.on_welcome,
    Kind.REFUSED: WorkerCore.on_refused,
    Kind.RESYNC: WorkerCore.on_resync,
    Kind.HEARTBEAT: WorkerCore.on_heartbeat,
    Kind.DRAIN: WorkerCore.on_drain,
    Kind.ACK: WorkerCore.on_ack,
    Kind.JOB: WorkerCore.on_job,
    Kind.CANCEL: WorkerCore.on_cancel,
}
"""One handler per message kind a master sends a worker; any other kind is ignored."""
