"""The worker's loop: one DEALER to the master, one thread per running attempt.

`tick()` is one pass: read the master's messages and the runners' events, ship logs, heartbeat, resend
unacknowledged results, reconnect when the master has gone silent, and decide whether to stop (drain,
burst). Runner threads never touch the socket; they hand events over a queue and wake the loop via a pipe.
Intervals and deadlines run on the monotonic clock (`mono`); the wall clock (`wall`) only stamps what the
master stores and shows, so a step of the system clock changes no timing here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ffrtmp import __version__, defaults
from ffrtmp.errors import InvalidInput, ProtocolError, ProtocolMismatch
from ffrtmp.failures import Failure
from ffrtmp.jobspec import FIELDS, validate_submission
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, Message, decode, encode, encode_batch, unbatch
from ffrtmp.security import KeyPair
from ffrtmp.transport import DealerSocket
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.lease import MasterLease, master_down
from ffrtmp.worker.logship import LogShipper
from ffrtmp.worker.outputs import discard, publish
from ffrtmp.worker.resources import ResourceSampler
from ffrtmp.worker.retention import RetentionSweeper
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths
from ffrtmp.worker.sources import InputPolicy
from ffrtmp.worker.spool import ResultSpool
from ffrtmp.worker.stopping import FORCE_WAIT, StopPlan, Verdict, end_attempts, exit_line

log = logging.getLogger("ffrtmp.worker")

HELLO_RETRY = 2.0
"""Until the master welcomes us, HELLO is resent this often."""
JOIN_POLL = 0.05
"""How often a worker that has not joined yet checks its connection."""


@dataclass
class WorkerOptions:
    master: str = defaults.MASTER_URL
    master_key: bytes | None = None
    """The master's public key (CURVE), or None to connect without CURVE."""
    client_keys: KeyPair | None = None
    api_key: str | None = None
    name: str = "worker"
    fingerprint: str = ""
    slots: int = 1
    work_dir: Path = field(default_factory=defaults.work_dir)
    labels: dict[str, str] = field(default_factory=dict)
    output_roots: tuple[Path, ...] = ()
    burst: bool = False
    drain_timeout: float = 60.0
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    node_timeout: float = defaults.NODE_TIMEOUT
    deliver_timeout: float = defaults.DELIVER_TIMEOUT
    """When stopping, how long unacknowledged results are offered to the master once nothing runs."""
    prefetch: int = defaults.PREFETCH
    """Jobs held beyond the free slots (not started), so the next starts the moment a slot frees."""
    output_retention: float = defaults.OUTPUT_RETENTION
    """Outputs in the work dir older than this are deleted (0: never); stray partials always are."""
    tracing: Any = None
    """A `ffrtmp.tracing.Tracing`, or None: each attempt's run becomes a span in its job's trace."""
    input_roots: tuple[Path, ...] = ()
    """Local inputs are read only under these dirs (none: no local inputs)."""
    allow_private_network: bool = False
    """URL inputs and RTMP outputs may reach loopback, private and link-local addresses."""


class WorkerExit(Exception):
    """The loop is over; `code` is the process exit status."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


class Agent:
    def __init__(self, options: WorkerOptions, capabilities: Capabilities, *,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.mono = mono
        self.options = options
        self.capabilities = capabilities
        self.encoders = capabilities.encoder_map()
        """Built once: capabilities are fixed at start-up; rebuilt per JOB it was 71 % of a busy worker's CPU."""
        self.paths = WorkerPaths(options.work_dir, options.output_roots)
        self.input_policy = InputPolicy(options.input_roots, options.allow_private_network)
        self.sampler = ResourceSampler(options.work_dir)
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.attempts: dict[str, Attempt] = {}
        """Every attempt this worker holds: running, and prefetched ones (`held`) waiting for a slot."""
        self.held: dict[str, dict[str, Any] | None] = {}
        """Prefetched attempts not started yet, oldest first: job id → the JOB's trace carrier."""
        self.unacked: dict[tuple[str, int], tuple[dict[str, Any], float]] = {}
        """RESULT bodies sent and not yet acknowledged, with when they were last sent."""
        self.results_due: list[dict[str, Any]] = []
        """RESULT bodies to send at the end of this pass, together."""
        self.publishing: dict[tuple[str, int], tuple[str, str]] = {}
        """Completed attempts whose file waits under its partial name (partial, final) for the master's word."""
        self.silent_for = 0.0
        self.master_publishes = False
        """The master fences the publish step (says so in WELCOME); an older one gets outputs renamed at once."""
        """How long the master had been silent when this pass's frames arrived (they may be that old)."""
        self.retention = RetentionSweeper(self.paths.outputs, options.output_retention, self.files_in_use)
        self.logs = LogShipper(self._send)
        self.sock: DealerSocket | None = None
        self.poller = zmq.Poller()
        self.welcomed = False
        self.ever_welcomed = False
        self.lease = MasterLease(options.node_timeout, heard_at=mono())
        self.last_hello = 0.0
        self.next_heartbeat = 0.0
        self.master_pending: int | None = None
        self.stop = StopPlan(options.drain_timeout, options.deliver_timeout)
        self.stop_requests = 0
        """Stop requests (signals) not yet acted on: counted here, acted on by the loop on its own clock."""
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.reconnect_at = 0.0
        self.next_probe = 0.0
        self.master_down_said = False
        self.rng = random.Random()
        self.heartbeat_interval = options.heartbeat_interval
        self.spool = ResultSpool(options.work_dir / "undelivered" / options.name)
        self.spooled: set[tuple[str, int]] = set()
        for body in self.spool.load():  # results an earlier run could not deliver: offered at the next WELCOME
            self.unacked[(body["job"], body["attempt"])] = (body, -math.inf)
            self.spooled.add((body["job"], body["attempt"]))
        if self.spooled:
            log.info("%d undelivered results from an earlier run, kept in %s, will be reported", len(self.spooled),
                     self.spool.directory)
        self.completed = 0
        self.failed = 0
        self.spans: dict[tuple[str, int], Any] = {}
        self.loop_thread: int | None = None

    # ---- connection -------------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        if self.sock is not None:
            self.poller.unregister(self.sock.socket)
            self.sock.close()
        self.sock = DealerSocket(self.options.master, self.options.master_key, self.options.client_keys,
                                 immediate=True)
        self.poller = zmq.Poller()
        self.poller.register(self.sock.socket, zmq.POLLIN)
        self.poller.register(self.wake_read, zmq.POLLIN)
        self.welcomed = False
        self.logs.pause()
        self.last_hello = 0.0

    @property
    def draining(self) -> bool:
        return self.stop.stopping

    @property
    def node_timeout(self) -> float:
        """The master's node timeout, as its WELCOME announced it (the length of the lease)."""
        return self.lease.node_timeout

    @property
    def stop_now(self) -> bool:
        return self.stop.forced_at is not None

    @stop_now.setter
    def stop_now(self, value: bool) -> None:
        """Stop at once (in-process harnesses): the same as two stop requests."""
        if value:
            self.stop_requests += 2

    def request_stop(self) -> None:
        """SIGTERM / Ctrl-C (safe from a signal handler): the first drains, the next stops at once."""
        self.stop_requests += 1
        self.wake()

    def _send(self, frame: bytes) -> bool:
        return self.sock is not None and self.sock.send(frame)

    def hello_body(self) -> dict[str, Any]:
        running = [{"job": a.job, "attempt": a.attempt} for a in self.attempts.values()]
        running += [{"job": job, "attempt": attempt} for job, attempt in self.unacked]
        body: dict[str, Any] = {
            "name": self.options.name, "fingerprint": self.options.fingerprint, "version": __version__,
            "slots": self.options.slots, "engines": self.capabilities.engines,
            "encoders": self.encoders, "labels": self.options.labels,
            "resources": self.sampler.sample(), "running": running, "draining": self.draining,
            "prefetch": self.options.prefetch,
        }
        if self.options.api_key:
            body["key"] = self.options.api_key
        return body

    # ---- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self.loop_thread = threading.get_ident()
        self.connect(self.mono())
        try:
            while True:
                self.tick(self.mono())
        except WorkerExit as done:
            if str(done):
                log.log(logging.ERROR if done.code else logging.INFO, "%s", done)
            return done.code
        finally:
            self.shutdown()

    def tick(self, now: float) -> None:
        assert self.sock is not None
        # Not welcomed yet: look again soon (the connection may come up any moment), without spinning.
        until_beat = self.next_heartbeat - now if self.welcomed else JOIN_POLL
        until_lease = self.lease.due_in(now) if self.attempts else math.inf
        timeout = max(0.0, min(until_beat, self.logs.due_in(now), until_lease, self.stop.due_in(now), 0.5))
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.sock.socket in ready:
            self.silent_for = self.lease.silent_for(self.mono())
            while (frame := self.sock.recv_nowait()) is not None:
                self.on_frame(frame, self.mono())
        if self.wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_read, 65536)
        now = self.mono()
        self.drain_events(now)
        self.logs.flush(now)
        self.send_results()
        self.keep_alive(now)
        self.check_stop(now)
        self.retention.maybe_start(now, self.wall())

    def files_in_use(self) -> set[str]:
        """Partial files this worker still writes or waits to publish."""
        held = {attempt.partial for attempt in self.attempts.values() if attempt.partial}
        return held | {partial for partial, _ in self.publishing.values()}

    def emit(self, event: Event) -> None:
        """Called from runner threads, and from the loop itself for null jobs (which need no wake-up call)."""
        self.events.put(event)
        if threading.get_ident() != self.loop_thread:
            self.wake()

    def wake(self) -> None:
        """Make the loop's poll return now (safe from threads and signal handlers)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_write, b"!")

    def keep_alive(self, now: float) -> None:
        assert self.sock is not None
        if self.attempts and self.lease.silent_for(now) > 2 * self.heartbeat_interval and now >= self.next_probe:
            # Probed often while it is silent: its restart (and fresh node timeout) is then never long after the
            # last refusal, and the lease that follows cannot run out just before the new master speaks.
            self.next_probe = now + max(0.5, self.heartbeat_interval)
            if master_down(self.options.master):
                if not self.master_down_said:
                    self.master_down_said = True
                    log.warning("master %s is down (connection refused): keeping %d attempts for it to adopt",
                                self.options.master, len(self.attempts))
                self.lease.heard(now)  # a master that is down gives nothing away; restarted, it grants a fresh one
        if self.lease.expired(now):
            self.lease_expired(now)
        if not self.welcomed:
            self.sock.poll_events()
            if self.sock.handshake_error and not self.ever_welcomed:
                raise WorkerExit(3, f"cannot join {self.options.master}: {self.sock.handshake_error} "
                                    "(check --master-key / FFRTMP_MASTER_KEY)")
            # A HELLO that could not even be queued (no connection yet) is retried at once when it comes up.
            if now - self.last_hello >= HELLO_RETRY and self._send(encode(Kind.HELLO, self.hello_body())):
                self.last_hello = now
            return
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.heartbeat_interval
            self._send(encode(Kind.HEARTBEAT, self.heartbeat_body()))
        for key, (body, sent_at) in list(self.unacked.items()):
            if now - sent_at >= defaults.RESULT_RESEND_INTERVAL:
                self.unacked[key] = (body, now)
                self.results_due.append(body)
        self.send_results()

    def lease_expired(self, now: float) -> None:
        """The master has been silent for the node timeout: it has given our attempts away, so stop them."""
        silent = self.lease.silent_for(now)
        reason = (f"worker lost its master: silent for {silent:.0f}s, past the node timeout "
                  f"of {self.lease.node_timeout:g}s, so the master has given this attempt away")
        if self.held:
            self.drop_held(list(self.held), reason, now)
        for attempt in self.attempts.values():
            if not attempt.cancel.is_set():
                attempt.cancel_reason = reason
                log.warning("job %s attempt %d stopped: %s", attempt.job, attempt.attempt, attempt.cancel_reason,
                            extra={"job": attempt.job, "attempt": attempt.attempt, "node": self.options.name})
                attempt.cancel.set()
        if now >= self.reconnect_at:
            log.warning("master %s silent for %.0fs: reconnecting", self.options.master, silent)
            self.reconnect_at = now + self.reconnect_delay * self.rng.uniform(0.5, 1.0)
            self.reconnect_delay = min(defaults.RECONNECT_MAX, self.reconnect_delay * 2)
            self.connect(now)

    def heartbeat_body(self) -> dict[str, Any]:
        jobs = [{"job": a.job, "attempt": a.attempt, **({"queued": True} if a.job in self.held else a.progress)}
                for a in self.attempts.values()]
        jobs += [{"job": job, "attempt": attempt} for job, attempt in self.unacked]
        return {"jobs": jobs, "resources": self.sampler.sample(), "draining": self.draining}

    # ---- messages from the master -----------------------------------------------------------------

    def on_frame(self, frame: bytes, now: float) -> None:
        try:
            message = decode(frame)
            messages = unbatch(message) if message.kind is Kind.BATCH else [message]
        except ProtocolMismatch as exc:
            raise WorkerExit(2, exc.sentence("master", "worker")) from None
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the master: %s", exc)
            return
        self.lease.heard(now)
        self.master_down_said = False
        for one in messages:
            handler = getattr(self, f"on_{one.kind.value}", None)
            if handler is None:
                log.debug("ignored %s from the master", one.kind.value)
                continue
            handler(one, now)

    def on_welcome(self, message: Message, now: float) -> None:
        self.welcomed = self.ever_welcomed = True
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.reconnect_at = 0.0
        self.heartbeat_interval = float(message.body["heartbeat_interval"]) or self.heartbeat_interval
        self.lease.node_timeout = float(message.body["node_timeout"]) or self.lease.node_timeout
        self.next_heartbeat = now
        self.master_publishes = message.body.get("publish") is True
        if not self.master_publishes:  # a master that records 'completed' on the first RESULT
            for key in list(self.publishing):
                self.unacked[key] = (self._published(self.unacked[key][0], *self.publishing.pop(key)), now)
        self.logs.resend(now)  # before the results, so each attempt's lines arrive ahead of its end
        self.results_due.extend(body for body, _ in self.unacked.values())
        self.send_results()
        log.info("joined %s as %s (%d slots)", self.options.master, self.options.name, self.options.slots)

    def on_refused(self, message: Message, now: float) -> None:
        status = message.body["status"]
        code = {401: 4, 409: 2, 400: 2}.get(status, 2)
        raise WorkerExit(code, f"the master refused this worker: {message.body['error']}")

    def on_resync(self, message: Message, now: float) -> None:
        self.welcomed = False
        self.logs.pause()
        self.last_hello = 0.0

    def on_heartbeat(self, message: Message, now: float) -> None:
        pending = message.body.get("pending")
        if isinstance(pending, int):
            self.master_pending = pending
        for item in message.body.get("logs", []):  # the highest seq the master stored, per attempt
            if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in item[1:])):
                self.logs.ack(item[0], item[1], item[2])

    def on_drain(self, message: Message, now: float) -> None:
        self.start_drain(now)

    def on_ack(self, message: Message, now: float) -> None:
        key = (message.body["job"], message.body["attempt"])
        if message.body.get("publish") is True:
            self._publish(key, now)
            return
        self.unacked.pop(key, None)
        if key in self.spooled:
            self.spooled.discard(key)
            self.spool.remove(*key)
        if key in self.publishing:
            # Acknowledged without being accepted (a stale attempt): its file must never become the output.
            discard(self.publishing.pop(key)[0])
        if self.options.burst and not self.attempts and not self.unacked:
            self.master_pending = None
            self.next_heartbeat = now

    def _publish(self, key: tuple[str, int], now: float) -> None:
        """The master accepted this completed attempt: give its file the final name, then report it published."""
        entry, sent = self.publishing.get(key), self.unacked.get(key)
        if entry is None or sent is None:
            return  # published already: a repeated answer to a resent RESULT
        if self.silent_for > self.lease.node_timeout / 2:
            # The answer may have waited out a silence (SIGSTOP, partition) in which the master gave the job
            # away: publish only on an answer that is fresh, so ask again.
            self.unacked[key] = (sent[0], now)
            self.results_due.append(sent[0])
            return
        body = self._published(sent[0], *self.publishing.pop(key))
        self.unacked[key] = (body, now)
        self.results_due.append(body)

    @staticmethod
    def _published(sent: dict[str, Any], partial: str, final: str) -> dict[str, Any]:
        """Rename the partial file to its final name; the RESULT body that reports it (or the failure)."""
        body = {key: value for key, value in sent.items() if key != "partial"}
        try:
            publish(partial, final)
            body["published"] = True
        except OSError as exc:
            discard(partial)
            body.update(status="failed", failure=Failure.ENCODER_ERROR.value,
                        error=f"the output could not be published as {final}: {exc.strerror or exc}")
        return body

    def on_cancel(self, message: Message, now: float) -> None:
        current = self.attempts.get(message.body["job"])
        if current is not None and current.attempt == message.body["attempt"]:
            current.cancel_reason = "canceled by the master"
            current.cancel.set()
            if current.job in self.held:
                self.drop_held([current.job], current.cancel_reason, now)

    def on_job(self, message: Message, now: float) -> None:
        job_id, number, spec = message.body["job"], message.body["attempt"], message.body["spec"]
        current = self.attempts.get(job_id)
        if current is not None:
            if current.attempt >= number:
                return  # a duplicate delivery
            current.cancel_reason = "superseded by a newer attempt"
            current.cancel.set()
            if job_id in self.held:
                self.drop_held([job_id], current.cancel_reason, now)
        problem = spec_problem(spec)
        if problem is not None:  # checked again here: a worker runs nothing it has not understood
            self._finish(job_id, number, {"status": "failed", "failure": Failure.INVALID_INPUT.value,
                                          "error": f"malformed job spec: {problem}"}, now)
            return
        if self.draining or len(self.attempts) >= self.options.slots + self.options.prefetch:
            reason = "the worker is draining" if self.draining else "no free slot"
            self._finish(job_id, number, {"status": "failed", "failure": Failure.WORKER_LOST.value, "error": reason,
                                          "refused": True}, now)
            return
        attempt = Attempt(job=job_id, attempt=number, spec=spec, received_at=now)
        self.attempts[job_id] = attempt
        if len(self.attempts) - len(self.held) > self.options.slots:
            self.held[job_id] = message.body.get("trace")  # prefetched: starts when a slot frees (start_held)
            return
        self._start(attempt, message.body.get("trace"))

    def _start(self, attempt: Attempt, trace: dict[str, Any] | None) -> None:
        job_id, number, spec = attempt.job, attempt.attempt, attempt.spec
        if self.options.tracing is not None:
            self.spans[(job_id, number)] = self.options.tracing.start(
                "ffrtmp.run", carrier=trace, attributes={
                    "ffrtmp.job": job_id, "ffrtmp.attempt": number, "ffrtmp.node": self.options.name,
                    "ffrtmp.engine": spec.get("engine"), "ffrtmp.scenario": spec.get("scenario")})
        # null jobs come by the thousand: they are logged at debug level only
        log.log(logging.DEBUG if spec.get("engine") == "null" else logging.INFO, "job %s attempt %d: %s %s",
                job_id, number, spec.get("engine"), spec.get("scenario"),
                extra={"job": job_id, "attempt": number, "node": self.options.name})
        runner = AttemptRunner(attempt, self.paths, self.capabilities.ffmpeg, self.encoders,
                               self.emit, cpu_count=self.capabilities.cpu_count,
                               gst_launch=self.capabilities.gstreamer, policy=self.input_policy)
        if spec.get("engine") == "null":
            runner.run()  # completes at once; no thread needed
            return
        attempt.thread = threading.Thread(target=runner.run, name=f"job-{job_id[:8]}", daemon=True)
        attempt.thread.start()

    def start_held(self) -> None:
        """Start prefetched attempts while slots are free (never while draining: those were handed back)."""
        while self.held and not self.draining and len(self.attempts) - len(self.held) < self.options.slots:
            job_id = next(iter(self.held))
            self._start(self.attempts[job_id], self.held.pop(job_id))

    def drop_held(self, job_ids: list[str], reason: str, now: float) -> None:
        """End prefetched attempts that never started (reported like a runner's end: a `worker…` reason makes
        them lost, to be retried). All leave the queue first, so none of them starts on a slot another frees."""
        for job_id in job_ids:
            self.held.pop(job_id, None)
        for job_id in job_ids:
            attempt = self.attempts[job_id]
            attempt.cancel_reason = reason
            attempt.cancel.set()
            self._finish(job_id, attempt.attempt, {"status": "canceled", "error": reason,
                                                   "failure": Failure.CANCELED.value}, now)

    def hand_back_held(self, now: float) -> None:
        """Draining: prefetched attempts not started go back to the master at once, not after the drain."""
        for job_id in list(self.held):
            self.held.pop(job_id)
            self._finish(job_id, self.attempts[job_id].attempt, {
                "status": "failed", "failure": Failure.WORKER_LOST.value, "refused": True,
                "error": "the worker is draining (a prefetched job, not started)"}, now)

    # ---- events from runners ----------------------------------------------------------------------

    def drain_events(self, now: float | None = None) -> None:
        now = self.mono() if now is None else now
        # A prefetched null job started by an ending here emits its own events at once: handle them too.
        while not self.events.empty():
            self._drain_events_once(now)

    def _drain_events_once(self, now: float) -> None:
        events: list[Event] = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                break
        # An attempt that started and ended within one pass (a null job) needs no STARTED message:
        # its RESULT carries the start time, which halves the messages per short job.
        ended = {(e.job, e.attempt) for e in events if e.kind == "finished"}
        started: dict[tuple[str, int], float] = {}
        for event in events:
            if event.kind == "log":
                self.logs.add(event.job, event.attempt, event.data, now)
            elif event.kind == "started":
                if (event.job, event.attempt) in ended:
                    started[(event.job, event.attempt)] = float(event.data)
                else:
                    self._send(encode(Kind.STARTED, {"job": event.job, "attempt": event.attempt, "at": self.wall()}))
            elif event.kind == "finished":
                result = event.data
                if (event.job, event.attempt) in started:
                    result = {**result, "started_at": started[(event.job, event.attempt)]}
                self._finish(event.job, event.attempt, result, now)

    def _finish(self, job_id: str, number: int, result: dict[str, Any], now: float) -> None:
        current = self.attempts.get(job_id)
        if current is not None and current.attempt == number:
            del self.attempts[job_id]
            if result["status"] == "canceled" and current.cancel_reason.startswith("worker"):
                result = {**result, "status": "failed", "failure": Failure.WORKER_LOST.value}
            if self.held:
                self.start_held()  # the freed slot takes the next prefetched attempt now, not a round trip later
        if result["status"] == "completed":
            self.completed += 1
        else:
            self.failed += 1
        null = current is not None and current.spec.get("engine") == "null"
        log.log(logging.DEBUG if null else logging.INFO, "job %s attempt %d %s%s", job_id, number, result["status"],
                f": {result.get('error')}" if result.get("error") else "",
                extra={"job": job_id, "attempt": number, "node": self.options.name})
        self.logs.flush_job(job_id, number)
        span = self.spans.pop((job_id, number), None)
        if span is not None:
            metrics = result.get("metrics") or {}
            self.options.tracing.end(span, error=None if result["status"] == "completed" else str(
                result.get("error") or result["status"]), attributes={
                "ffrtmp.status": result["status"], "ffrtmp.failure": result.get("failure") or "",
                **{f"ffrtmp.metrics.{k}": v for k, v in metrics.items()}})
        body = {"job": job_id, "attempt": number, "at": self.wall(), "status": result["status"],
                "error": result.get("error"), "failure": result.get("failure"),
                "metrics": result.get("metrics") or {}, "output": result.get("output")}
        if result.get("refused"):
            body["refused"] = True
        if result["status"] == "completed" and result.get("partial") and result.get("output"):
            if self.master_publishes:
                body["partial"] = result["partial"]
                self.publishing[(job_id, number)] = (result["partial"], result["output"])
            else:
                body = self._published(body, result["partial"], result["output"])
        if "started_at" in result:
            body["started_at"] = result["started_at"]
        self.unacked[(job_id, number)] = (body, now)
        self.results_due.append(body)

    def send_results(self) -> None:
        """Send the results due, many in one frame: with short jobs a worker finishes hundreds a pass."""
        due, self.results_due = self.results_due, []
        for start in range(0, len(due), MAX_BATCH_ITEMS):
            self._send(encode_batch([(Kind.RESULT, body) for body in due[start:start + MAX_BATCH_ITEMS]]))

    # ---- stopping ---------------------------------------------------------------------------------

    def start_drain(self, now: float) -> None:
        if not self.stop.stopping:
            self.stop.request(now)
            if self.held:
                log.info("draining: %d prefetched jobs not started go back to the master", len(self.held))
                self.hand_back_held(now)
            log.info("draining: no new jobs; %d running will finish (they are stopped after %gs)",
                     len(self.attempts), self.options.drain_timeout)
            self.next_heartbeat = now

    def check_stop(self, now: float) -> None:
        while self.stop_requests:
            self.stop_requests -= 1
            if not self.stop.stopping:
                self.start_drain(now)
            elif self.stop.forced_at is None:
                self.stop.request(now)
                log.warning("stopping now: %d running attempts are stopped", len(self.attempts))
        if self.stop.attempts_overdue(now):
            for attempt in self.attempts.values():
                if not attempt.cancel.is_set():
                    attempt.cancel_reason = "worker shutting down"
                    attempt.cancel.set()
        verdict = self.stop.verdict(now, len(self.attempts), len(self.unacked))
        if verdict is Verdict.DRAINED:
            self._send(encode(Kind.BYE))
            raise WorkerExit(0, f"drained: {self.completed} completed, {self.failed} failed")
        if verdict is Verdict.UNDELIVERED:
            self._send(encode(Kind.BYE))
            raise WorkerExit(3 if self.unacked else 0, self.undelivered_line(now))
        idle = not self.attempts and not self.unacked
        if self.options.burst and self.welcomed and idle and self.master_pending == 0:
            self._send(encode(Kind.BYE))
            raise WorkerExit(0, f"burst done: {self.completed} completed, {self.failed} failed")

    def undelivered_line(self, now: float) -> str:
        results = [(job, number, str(body["status"])) for (job, number), (body, _) in self.unacked.items()]
        return exit_line(f"stopped: {self.completed} completed, {self.failed} failed", results,
                         [(a.job, a.attempt) for a in self.attempts.values()],
                         f"the master {self.options.master} (silent for {self.lease.silent_for(now):.0f}s)",
                         f"kept in {self.spool.directory}: the next `ffrtmp worker --name {self.options.name}` "
                         "with this --work-dir reports them")

    def shutdown(self) -> None:
        """Stop what still runs (a forced stop: SIGKILL after FORCE_WAIT), keep undelivered results on disk."""
        if self.held:  # never started: reported (and kept) as lost, so they are retried
            self.drop_held(list(self.held), "worker shutting down", self.mono())
        end_attempts(list(self.attempts.values()), FORCE_WAIT if self.stop_now else 10.0, self.mono)
        self.drain_events()
        for key, (partial, _) in self.publishing.items():
            discard(partial)  # never accepted: once this process is gone, no one could publish it
            if key in self.unacked:  # so what is kept to report says the output is gone, not 'completed'
                body = {k: v for k, v in self.unacked[key][0].items() if k != "partial"}
                body.update(status="failed", failure=Failure.WORKER_LOST.value, output=None,
                            error="the worker stopped before the master accepted this attempt's output")
                self.unacked[key] = (body, self.unacked[key][1])
        self.publishing.clear()
        try:
            self.spool.save([body for body, _ in self.unacked.values()])
        except OSError as exc:
            log.error("cannot keep %d undelivered results in %s: %s", len(self.unacked), self.spool.directory, exc)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for fd in (self.wake_read, self.wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


def spec_problem(spec: dict[str, Any]) -> str | None:
    """What is wrong with a JOB's spec (the submit checks, run again), or None."""
    params = spec.get("params")
    if not isinstance(params, dict):
        return "params: must be an object"
    raw = {key: spec.get(key) for key in ("scenario", "engine", "queue", "priority", "labels", "timeout")}
    raw.update({key: value for key, value in params.items() if key in FIELDS and value is not None})
    try:
        validate_submission(raw, output_roots=("/",))  # absolute outputs: this worker's own roots decide
    except InvalidInput as exc:
        return str(exc)
    return None
