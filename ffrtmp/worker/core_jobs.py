"""The worker core's attempts: JOB and CANCEL in, runner threads started, prefetched ones held, ends reported.

An attempt runs in a runner thread (a null job runs inline: it completes at once), which hands events
through `emit` to `events`; `drain_events` turns them into STARTED and RESULT messages. Up to `prefetch` attempts
beyond the free slots are held, not started, so the next starts the moment a slot frees. No clock here:
the time comes in with each call (`now` stamps, `mono` measures), as everywhere in the core.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import Callable
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.failures import Failure
from ffrtmp.jobspec import FIELDS, validate_submission
from ffrtmp.protocol import Kind
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core_options import WorkerOptions
from ffrtmp.worker.core_results import Results, published
from ffrtmp.worker.fetch import DataChannel, InputFetcher
from ffrtmp.worker.filecache import FileCache
from ffrtmp.worker.logship import LogShipper
from ffrtmp.worker.measure import Measuring
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths
from ffrtmp.worker.sources import InputPolicy
from ffrtmp.worker.stopping import StopPlan

log = logging.getLogger("ffrtmp.worker")

Send = Callable[[Kind, dict[str, Any]], bool]
"""Queue one message to the master (False when there is no connection yet)."""


class Jobs:
    def __init__(self, options: WorkerOptions, capabilities: Capabilities, encoders: dict[str, dict[str, Any]], *,
                 results: Results, logs: LogShipper, stop: StopPlan, send: Send,
                 emit: Callable[[Event], None]) -> None:
        """`emit` is how runner threads hand their events in (it puts them in `events` and wakes the loop)."""
        self.options = options
        self.capabilities = capabilities
        self.encoders = encoders
        self.results = results
        self.logs = logs
        self.stop = stop
        self.send = send
        self.emit = emit
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.completed = 0
        self.failed = 0
        self.paths = WorkerPaths(options.work_dir, options.output_roots)
        self.input_policy = InputPolicy(options.input_roots, options.allow_private_network, options.path_maps)
        self.data_channel = DataChannel(options.master_key, options.client_keys)
        """The master's data channel, as its WELCOME names it (stored inputs in, stored outputs out)."""
        self.fetcher = InputFetcher(self.data_channel, FileCache(options.work_dir / "cache", options.cache_max_bytes))
        self.measuring = Measuring(quality_metrics=capabilities.quality, watts_per_core=options.watts_per_core,
                                   nvidia_smi=shutil.which("nvidia-smi"), inline=options.quality_inline)
        self.attempts: dict[str, Attempt] = {}
        """Every attempt this worker holds: running, and prefetched ones (`held`) waiting for a slot."""
        self.held: dict[str, dict[str, Any] | None] = {}
        """Prefetched attempts not started yet, oldest first: job id → the JOB's trace carrier."""
        self.spans: dict[tuple[str, int], Any] = {}

    def files_in_use(self) -> set[str]:
        """Partial files this worker still writes or waits to publish."""
        held = {attempt.partial for attempt in self.attempts.values() if attempt.partial}
        return held | {partial for partial, _ in self.results.publishing.values()}

    # ---- from the master --------------------------------------------------------------------------

    def on_cancel(self, body: dict[str, Any], now: float, mono: float) -> None:
        current = self.attempts.get(body["job"])
        if body.get("recall") is True:
            # Another node has a free slot for a job held here: hand it back if it has not started; one that
            # started meanwhile runs on (master/recall.py).
            if current is not None and current.attempt == body["attempt"] and current.job in self.held:
                self.hand_back(current.job, "recalled by the master for a worker with a free slot (prefetched, "
                               "not started)", now, mono, recalled=True)
            return
        if current is not None and current.attempt == body["attempt"]:
            current.cancel_reason = "canceled by the master"
            current.cancel.set()
            if current.job in self.held:
                self.drop_held([current.job], current.cancel_reason, now, mono)

    def on_job(self, body: dict[str, Any], now: float, mono: float) -> None:
        job_id, number, spec = body["job"], body["attempt"], body["spec"]
        options = self.options
        current = self.attempts.get(job_id)
        if current is not None:
            if current.attempt >= number:
                return  # a duplicate delivery
            current.cancel_reason = "superseded by a newer attempt"
            current.cancel.set()
            if job_id in self.held:
                self.drop_held([job_id], current.cancel_reason, now, mono)
        problem = spec_problem(spec)
        if problem is not None:  # checked again here: a worker runs nothing it has not understood
            self.finish(job_id, number, {"status": "failed", "failure": Failure.INVALID_INPUT.value,
                                         "error": f"malformed job spec: {problem}"}, now, mono)
            return
        if self.stop.stopping or len(self.attempts) >= options.slots + options.prefetch:
            reason = "the worker is draining" if self.stop.stopping else "no free slot"
            self.finish(job_id, number, {"status": "failed", "failure": Failure.WORKER_LOST.value, "error": reason,
                                         "refused": True}, now, mono)
            return
        attempt = Attempt(job=job_id, attempt=number, spec=spec, received_at=mono)
        self.attempts[job_id] = attempt
        if len(self.attempts) - len(self.held) > options.slots:
            self.held[job_id] = body.get("trace")  # prefetched: starts when a slot frees (start_held)
            self.fetch_ahead(attempt)
            return
        self.start(attempt, body.get("trace"))

    def fetch_ahead(self, attempt: Attempt) -> None:
        """A held attempt's stored input comes into the cache while it waits, so that it starts on its slot
        without waiting for the transfer (the cache fetches a file once: a start meanwhile waits for this one)."""
        input_file = attempt.spec["params"].get("input_file")
        if not isinstance(input_file, dict) or self.fetcher.channel.peer is None:
            return

        def fetch() -> None:
            try:
                with self.fetcher.input(attempt.job, attempt.attempt, input_file):
                    pass
            except Exception as exc:  # the attempt fetches again when it starts, and reports a failure then
                log.info("job %s attempt %d: its input was not fetched ahead: %s", attempt.job, attempt.attempt,
                         exc, extra={"job": attempt.job, "attempt": attempt.attempt, "node": self.options.name})

        threading.Thread(target=fetch, name=f"fetch-{attempt.job[:8]}", daemon=True).start()

    # ---- starting and holding ---------------------------------------------------------------------

    def start(self, attempt: Attempt, trace: dict[str, Any] | None) -> None:
        options = self.options
        job_id, number, spec = attempt.job, attempt.attempt, attempt.spec
        if options.tracing is not None:
            self.spans[(job_id, number)] = options.tracing.start(
                "ffrtmp.run", carrier=trace, attributes={
                    "ffrtmp.job": job_id, "ffrtmp.attempt": number, "ffrtmp.node": options.name,
                    "ffrtmp.engine": spec.get("engine"), "ffrtmp.scenario": spec.get("scenario")})
        # null jobs come by the thousand: they are logged at debug level only
        log.log(logging.DEBUG if spec.get("engine") == "null" else logging.INFO, "job %s attempt %d: %s %s",
                job_id, number, spec.get("engine"), spec.get("scenario"),
                extra={"job": job_id, "attempt": number, "node": options.name})
        runner = AttemptRunner(attempt, self.paths, self.capabilities.ffmpeg, self.encoders,
                               self.emit, cpu_count=self.capabilities.cpu_count,
                               gst_launch=self.capabilities.gstreamer, policy=self.input_policy,
                               fetcher=self.fetcher, measuring=self.measuring)
        if spec.get("engine") == "null":
            runner.run()  # completes at once; no thread needed
            return
        attempt.thread = threading.Thread(target=runner.run, name=f"job-{job_id[:8]}", daemon=True)
        attempt.thread.start()

    def start_held(self) -> None:
        """Start prefetched attempts while slots are free (never while draining: those were handed back)."""
        while self.held and not self.stop.stopping and len(self.attempts) - len(self.held) < self.options.slots:
            job_id = next(iter(self.held))
            self.start(self.attempts[job_id], self.held.pop(job_id))

    def drop_held(self, job_ids: list[str], reason: str, now: float, mono: float) -> None:
        """End prefetched attempts that never started (reported like a runner's end: a `worker…` reason makes
        them lost, to be retried). All leave the queue first, so none of them starts on a slot another frees."""
        for job_id in job_ids:
            self.held.pop(job_id, None)
        for job_id in job_ids:
            attempt = self.attempts[job_id]
            attempt.cancel_reason = reason
            attempt.cancel.set()
            self.finish(job_id, attempt.attempt, {"status": "canceled", "error": reason,
                                                  "failure": Failure.CANCELED.value}, now, mono)

    def hand_back_held(self, now: float, mono: float) -> None:
        """Draining: prefetched attempts not started go back to the master at once, not after the drain."""
        if not self.held:
            return
        log.info("draining: %d prefetched jobs not started go back to the master", len(self.held))
        for job_id in list(self.held):
            self.hand_back(job_id, "the worker is draining (a prefetched job, not started)", now, mono)

    def hand_back(self, job_id: str, why: str, now: float, mono: float, recalled: bool = False) -> None:
        """A held attempt goes back to the master unstarted: refused, so its retry is not used."""
        self.held.pop(job_id)
        self.finish(job_id, self.attempts[job_id].attempt, {
            "status": "failed", "failure": Failure.WORKER_LOST.value, "refused": True, "error": why,
            **({"recalled": True} if recalled else {})}, now, mono)

    def stop_all(self, reason: str, now: float, mono: float) -> None:
        """The lease ran out: held attempts end at once, running ones are stopped (each logged once)."""
        if self.held:
            self.drop_held(list(self.held), reason, now, mono)
        for attempt in self.attempts.values():
            if not attempt.cancel.is_set():
                attempt.cancel_reason = reason
                log.warning("job %s attempt %d stopped: %s", attempt.job, attempt.attempt, attempt.cancel_reason,
                            extra={"job": attempt.job, "attempt": attempt.attempt, "node": self.options.name})
                attempt.cancel.set()

    def cancel_running(self, reason: str) -> None:
        for attempt in self.attempts.values():
            if not attempt.cancel.is_set():
                attempt.cancel_reason = reason
                attempt.cancel.set()

    # ---- events from runners ----------------------------------------------------------------------

    def drain_events(self, now: float, mono: float) -> None:
        # A prefetched null job started by an ending here emits its own events at once: handle them too.
        while not self.events.empty():
            self._drain_events_once(now, mono)

    def _drain_events_once(self, now: float, mono: float) -> None:
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
                self.logs.add(event.job, event.attempt, event.data, mono)
            elif event.kind == "started":
                if (event.job, event.attempt) in ended:
                    started[(event.job, event.attempt)] = float(event.data)
                else:
                    self.send(Kind.STARTED, {"job": event.job, "attempt": event.attempt, "at": now})
            elif event.kind == "finished":
                result = event.data
                if (event.job, event.attempt) in started:
                    result = {**result, "started_at": started[(event.job, event.attempt)]}
                self.finish(event.job, event.attempt, result, now, mono)

    def finish(self, job_id: str, number: int, result: dict[str, Any], now: float, mono: float) -> None:
        """An attempt ended (or was refused): its RESULT is sent and kept until the master acknowledges it."""
        options = self.options
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
                extra={"job": job_id, "attempt": number, "node": options.name})
        self.logs.flush_job(job_id, number)
        span = self.spans.pop((job_id, number), None)
        if span is not None:
            metrics = result.get("metrics") or {}
            options.tracing.end(span, error=None if result["status"] == "completed" else str(
                result.get("error") or result["status"]), attributes={
                "ffrtmp.status": result["status"], "ffrtmp.failure": result.get("failure") or "",
                **{f"ffrtmp.metrics.{k}": v for k, v in metrics.items()}})
        body = {"job": job_id, "attempt": number, "at": now, "status": result["status"],
                "error": result.get("error"), "failure": result.get("failure"),
                "metrics": result.get("metrics") or {}, "output": result.get("output")}
        if result.get("refused"):
            body["refused"] = True
            if result.get("recalled"):
                body["recalled"] = True
        if result["status"] == "completed" and result.get("output_file"):
            body["output_file"] = result["output_file"]  # stored by this attempt: the master checks it is
        if result["status"] == "completed" and result.get("partial") and result.get("output"):
            if self.results.master_publishes:
                body["partial"] = result["partial"]
                self.results.hold_for_publish((job_id, number), result["partial"], result["output"])
            else:
                body = published(body, result["partial"], result["output"])
        if "started_at" in result:
            body["started_at"] = result["started_at"]
        self.results.record(body, mono)


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
