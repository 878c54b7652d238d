"""The worker's loop: one DEALER to the master, one thread per running attempt.

`tick()` is one pass: read the master's messages and the runners' events, ship logs, heartbeat, resend
unacknowledged results, reconnect when the master has gone silent, and decide whether to stop (drain,
burst). Runner threads never touch the socket; they hand events over a queue and wake the loop via a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ffrtmp import __version__, defaults
from ffrtmp.errors import InvalidInput, ProtocolError
from ffrtmp.failures import Failure
from ffrtmp.jobspec import FIELDS, validate_submission
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, Message, decode, encode, encode_batch, unbatch
from ffrtmp.security import KeyPair
from ffrtmp.transport import DealerSocket
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.logship import LogShipper
from ffrtmp.worker.resources import ResourceSampler
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths
from ffrtmp.worker.sources import InputPolicy

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
    def __init__(self, options: WorkerOptions, capabilities: Capabilities) -> None:
        self.options = options
        self.capabilities = capabilities
        self.paths = WorkerPaths(options.work_dir, options.output_roots)
        self.input_policy = InputPolicy(options.input_roots, options.allow_private_network)
        self.sampler = ResourceSampler(options.work_dir)
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.attempts: dict[str, Attempt] = {}
        self.unacked: dict[tuple[str, int], tuple[dict[str, Any], float]] = {}
        """RESULT bodies sent and not yet acknowledged, with when they were last sent."""
        self.results_due: list[dict[str, Any]] = []
        """RESULT bodies to send at the end of this pass, together."""
        self.logs = LogShipper(self._send)
        self.sock: DealerSocket | None = None
        self.poller = zmq.Poller()
        self.welcomed = False
        self.ever_welcomed = False
        self.last_heard = 0.0
        self.last_hello = 0.0
        self.next_heartbeat = 0.0
        self.master_pending: int | None = None
        self.draining = False
        self.drain_started: float | None = None
        self.stop_now = False
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.rng = random.Random()
        self.heartbeat_interval = options.heartbeat_interval
        self.node_timeout = options.node_timeout
        self.completed = 0
        self.failed = 0
        self.spans: dict[tuple[str, int], Any] = {}

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
        self.last_heard = now
        self.last_hello = 0.0

    def _send(self, frame: bytes) -> bool:
        return self.sock is not None and self.sock.send(frame)

    def hello_body(self) -> dict[str, Any]:
        running = [{"job": a.job, "attempt": a.attempt} for a in self.attempts.values()]
        running += [{"job": job, "attempt": attempt} for job, attempt in self.unacked]
        body: dict[str, Any] = {
            "name": self.options.name, "fingerprint": self.options.fingerprint, "version": __version__,
            "slots": self.options.slots, "engines": self.capabilities.engines,
            "encoders": self.capabilities.encoder_map(), "labels": self.options.labels,
            "resources": self.sampler.sample(), "running": running, "draining": self.draining,
        }
        if self.options.api_key:
            body["key"] = self.options.api_key
        return body

    # ---- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self.connect(time.monotonic())
        try:
            while True:
                self.tick(time.monotonic())
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
        timeout = max(0.0, min(until_beat, self.logs.due_in(now), 0.5))
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.sock.socket in ready:
            while (frame := self.sock.recv_nowait()) is not None:
                self.on_frame(frame, time.monotonic())
        if self.wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_read, 65536)
        now = time.monotonic()
        self.drain_events()
        self.logs.flush(now)
        self.send_results()
        self.keep_alive(now)
        self.check_stop(now)

    def emit(self, event: Event) -> None:
        """Called from runner threads."""
        self.events.put(event)
        self.wake()

    def wake(self) -> None:
        """Make the loop's poll return now (safe from threads and signal handlers)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_write, b"!")

    def keep_alive(self, now: float) -> None:
        assert self.sock is not None
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
        if now - self.last_heard > self.node_timeout:
            delay = self.reconnect_delay * self.rng.uniform(0.5, 1.0)
            log.warning("master %s silent for %.0fs: reconnecting", self.options.master, now - self.last_heard)
            self.reconnect_delay = min(defaults.RECONNECT_MAX, self.reconnect_delay * 2)
            self.connect(now - self.node_timeout + delay)

    def heartbeat_body(self) -> dict[str, Any]:
        jobs = [{"job": a.job, "attempt": a.attempt, **a.progress} for a in self.attempts.values()]
        jobs += [{"job": job, "attempt": attempt} for job, attempt in self.unacked]
        return {"jobs": jobs, "resources": self.sampler.sample(), "draining": self.draining}

    # ---- messages from the master -----------------------------------------------------------------

    def on_frame(self, frame: bytes, now: float) -> None:
        try:
            message = decode(frame)
            messages = unbatch(message) if message.kind is Kind.BATCH else [message]
        except ProtocolError as exc:
            log.warning("dropped a malformed message from the master: %s", exc)
            return
        self.last_heard = now
        for one in messages:
            handler = getattr(self, f"on_{one.kind.value}", None)
            if handler is None:
                log.debug("ignored %s from the master", one.kind.value)
                continue
            handler(one, now)

    def on_welcome(self, message: Message, now: float) -> None:
        self.welcomed = self.ever_welcomed = True
        self.reconnect_delay = defaults.RECONNECT_MIN
        self.heartbeat_interval = float(message.body["heartbeat_interval"]) or self.heartbeat_interval
        self.node_timeout = float(message.body["node_timeout"]) or self.node_timeout
        self.next_heartbeat = now
        self.results_due.extend(body for body, _ in self.unacked.values())
        self.send_results()
        log.info("joined %s as %s (%d slots)", self.options.master, self.options.name, self.options.slots)

    def on_refused(self, message: Message, now: float) -> None:
        status = message.body["status"]
        code = {401: 4, 409: 2, 400: 2}.get(status, 2)
        raise WorkerExit(code, f"the master refused this worker: {message.body['error']}")

    def on_resync(self, message: Message, now: float) -> None:
        self.welcomed = False
        self.last_hello = 0.0

    def on_heartbeat(self, message: Message, now: float) -> None:
        pending = message.body.get("pending")
        if isinstance(pending, int):
            self.master_pending = pending

    def on_drain(self, message: Message, now: float) -> None:
        self.start_drain(now)

    def on_ack(self, message: Message, now: float) -> None:
        self.unacked.pop((message.body["job"], message.body["attempt"]), None)
        if self.options.burst and not self.attempts and not self.unacked:
            self.master_pending = None
            self.next_heartbeat = now

    def on_cancel(self, message: Message, now: float) -> None:
        current = self.attempts.get(message.body["job"])
        if current is not None and current.attempt == message.body["attempt"]:
            current.cancel_reason = "canceled by the master"
            current.cancel.set()

    def on_job(self, message: Message, now: float) -> None:
        job_id, number, spec = message.body["job"], message.body["attempt"], message.body["spec"]
        current = self.attempts.get(job_id)
        if current is not None:
            if current.attempt >= number:
                return  # a duplicate delivery
            current.cancel_reason = "superseded by a newer attempt"
            current.cancel.set()
        problem = spec_problem(spec)
        if problem is not None:  # checked again here: a worker runs nothing it has not understood
            self._finish(job_id, number, {"status": "failed", "failure": Failure.INVALID_INPUT.value,
                                          "error": f"malformed job spec: {problem}"})
            return
        if self.draining or len(self.attempts) >= self.options.slots:
            reason = "the worker is draining" if self.draining else "no free slot"
            self._finish(job_id, number, {"status": "failed", "failure": Failure.WORKER_LOST.value, "error": reason,
                                          "refused": True})
            return
        attempt = Attempt(job=job_id, attempt=number, spec=spec, received_at=now)
        if self.options.tracing is not None:
            self.spans[(job_id, number)] = self.options.tracing.start(
                "ffrtmp.run", carrier=message.body.get("trace"), attributes={
                    "ffrtmp.job": job_id, "ffrtmp.attempt": number, "ffrtmp.node": self.options.name,
                    "ffrtmp.engine": spec.get("engine"), "ffrtmp.scenario": spec.get("scenario")})
        # null jobs come by the thousand: they are logged at debug level only
        log.log(logging.DEBUG if spec.get("engine") == "null" else logging.INFO, "job %s attempt %d: %s %s",
                job_id, number, spec.get("engine"), spec.get("scenario"),
                extra={"job": job_id, "attempt": number, "node": self.options.name})
        self.attempts[job_id] = attempt
        runner = AttemptRunner(attempt, self.paths, self.capabilities.ffmpeg, self.capabilities.encoder_map(),
                               self.emit, cpu_count=self.capabilities.cpu_count,
                               gst_launch=self.capabilities.gstreamer, policy=self.input_policy)
        if spec.get("engine") == "null":
            runner.run()  # completes at once; no thread needed
            return
        import threading

        attempt.thread = threading.Thread(target=runner.run, name=f"job-{job_id[:8]}", daemon=True)
        attempt.thread.start()

    # ---- events from runners ----------------------------------------------------------------------

    def drain_events(self) -> None:
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
                self.logs.add(event.job, event.attempt, event.data)
            elif event.kind == "started":
                if (event.job, event.attempt) in ended:
                    started[(event.job, event.attempt)] = float(event.data)
                else:
                    self._send(encode(Kind.STARTED, {"job": event.job, "attempt": event.attempt, "at": time.time()}))
            elif event.kind == "finished":
                result = event.data
                if (event.job, event.attempt) in started:
                    result = {**result, "started_at": started[(event.job, event.attempt)]}
                self._finish(event.job, event.attempt, result)

    def _finish(self, job_id: str, number: int, result: dict[str, Any]) -> None:
        current = self.attempts.get(job_id)
        if current is not None and current.attempt == number:
            del self.attempts[job_id]
            if result["status"] == "canceled" and current.cancel_reason.startswith("worker"):
                result = {**result, "status": "failed", "failure": Failure.WORKER_LOST.value}
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
        body = {"job": job_id, "attempt": number, "at": time.time(), "status": result["status"],
                "error": result.get("error"), "failure": result.get("failure"),
                "metrics": result.get("metrics") or {}, "output": result.get("output")}
        if result.get("refused"):
            body["refused"] = True
        if "started_at" in result:
            body["started_at"] = result["started_at"]
        self.unacked[(job_id, number)] = (body, time.monotonic())
        self.results_due.append(body)

    def send_results(self) -> None:
        """Send the results due, many in one frame: with short jobs a worker finishes hundreds a pass."""
        due, self.results_due = self.results_due, []
        for start in range(0, len(due), MAX_BATCH_ITEMS):
            self._send(encode_batch([(Kind.RESULT, body) for body in due[start:start + MAX_BATCH_ITEMS]]))

    # ---- stopping ---------------------------------------------------------------------------------

    def start_drain(self, now: float) -> None:
        if not self.draining:
            log.info("draining: no new jobs; %d running will finish", len(self.attempts))
            self.draining = True
            self.drain_started = now
            self.next_heartbeat = now

    def check_stop(self, now: float) -> None:
        if self.stop_now or (self.draining and self.drain_started is not None
                             and now - self.drain_started > self.options.drain_timeout):
            for attempt in self.attempts.values():
                if not attempt.cancel.is_set():
                    attempt.cancel_reason = "worker shutting down"
                    attempt.cancel.set()
        idle = not self.attempts and not self.unacked
        if self.draining and idle:
            self._send(encode(Kind.BYE))
            raise WorkerExit(0, f"drained: {self.completed} completed, {self.failed} failed")
        if self.stop_now and not self.attempts:
            raise WorkerExit(0, "stopped")
        if self.options.burst and self.welcomed and idle and self.master_pending == 0:
            self._send(encode(Kind.BYE))
            raise WorkerExit(0, f"burst done: {self.completed} completed, {self.failed} failed")

    def shutdown(self) -> None:
        for attempt in self.attempts.values():
            attempt.cancel_reason = "worker shutting down"
            attempt.cancel.set()
        for attempt in self.attempts.values():
            if attempt.thread is not None:
                attempt.thread.join(timeout=10)
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
