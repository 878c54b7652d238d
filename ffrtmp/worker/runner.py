"""Runs one attempt in its own thread: check the disk, choose the engine, prepare the input, start the
process, read it, stop it.

The process (ffmpeg or gst-launch-1.0) gets its own process group (so a cancel kills it and anything it
spawned), a lower CPU priority and an argv list (never a shell), and it dies with the worker (`childdeath.py`).
Every line it writes becomes a LOG event; progress updates a snapshot the agent reads for heartbeats. The
agent's loop never waits on any of this.
A file output is written under the attempt's own partial name (`outputs.py`); the runner deletes only that
file, and the agent renames it once the master accepts the attempt.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ffrtmp.errors import FfrtmpError
from ffrtmp.failures import Failure
from ffrtmp.jobspec import default_timeout
from ffrtmp.worker.childdeath import engine_spawn
from ffrtmp.worker.childenv import child_environment
from ffrtmp.worker.deliver import Delivery, StaleAttempt, deliver
from ffrtmp.worker.diagnosis import Diagnosis
from ffrtmp.worker.disk import space_problem
from ffrtmp.worker.encoders import best_for, engine_of
from ffrtmp.worker.energy import Energy, EnergyMeter, is_gpu_encoder
from ffrtmp.worker.engines import Command, JobContext, UnsupportedJob, is_stream
from ffrtmp.worker.engines import ffmpeg as ffmpeg_engine
from ffrtmp.worker.engines import gstreamer as gstreamer_engine
from ffrtmp.worker.engines.choice import choose_engine
from ffrtmp.worker.fetch import InputFetcher, InputMissing
from ffrtmp.worker.gst_encoders import audio_encoder, audio_problem
from ffrtmp.worker.inputs import MAX_GENERATED_SECONDS, InputError, audio_codec, ensure_generated
from ffrtmp.worker.joblog import JobLogFilter
from ffrtmp.worker.lines import LineSplitter
from ffrtmp.worker.measure import Measuring, cost_metrics, inline_comparison, quality_mode, quality_pass
from ffrtmp.worker.outputs import OutputPlan, OutputRefused, discard, plan, resolve_output
from ffrtmp.worker.progress import FfmpegProgress, GstProgress, ProgressParser
from ffrtmp.worker.quality import ComparisonProgress, QualityError, QualityPass
from ffrtmp.worker.sources import (
    InputPolicy,
    SourceRefused,
    SourceUnavailable,
    check_source,
    check_stream_output,
    is_url,
)
from ffrtmp.worker.tools import FFMPEG_HINT, find_gstreamer
from ffrtmp.worker.usage import TreeUsage, Usage, reap

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a process must stop."""
TAP_LINES = 400
"""The last stderr lines kept for the quality scores (FFmpeg prints them last): a chatty input never grows it."""

NICE = 10

NULL_METRICS = {"wall_seconds": 0.0, "engine": "null", "cpu_seconds": 0.0, "energy_joules": 0.0,
                "energy_source": "estimated"}
"""A null job runs no process: it costs nothing, and says so like every other completed job."""

BUILDERS: dict[str, Callable[[JobContext], Command]] = {"ffmpeg": ffmpeg_engine.build,
                                                        "gstreamer": gstreamer_engine.build}
PROGRAM = {"ffmpeg": "ffmpeg", "gstreamer": "gst-launch-1.0"}


@dataclass
class Event:
    kind: str  # "started" | "log" | "finished"
    job: str
    attempt: int
    data: Any = None


@dataclass
class Attempt:
    """One attempt this worker runs; `progress` is replaced (not mutated) so readers see whole snapshots."""

    job: str
    attempt: int
    spec: dict[str, Any]
    received_at: float
    progress: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = "canceled"
    partial: str | None = None
    """The file this attempt writes, once known (retention leaves it alone)."""
    thread: threading.Thread | None = None
    done: bool = False
    pid: int | None = None
    """The engine's process (the leader of its own process group) while it runs."""


@dataclass
class WorkerPaths:
    work_dir: Path
    output_roots: tuple[Path, ...] = ()

    @property
    def inputs(self) -> Path:
        return self.work_dir / "inputs"

    @property
    def outputs(self) -> Path:
        return self.work_dir / "outputs"


@dataclass
class Finished:
    """How a process ended and what it cost."""

    code: int
    reason: str | None
    """None, 'canceled' or 'timeout'."""
    usage: Usage
    energy: Energy | None = None


class AttemptFailed(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


Emit = Callable[[Event], None]


class AttemptRunner:
    def __init__(self, attempt: Attempt, paths: WorkerPaths, ffmpeg: str | None, encoders: dict[str, Any],
                 emit: Emit, cpu_count: int = 1, gst_launch: str | None = None,
                 policy: InputPolicy | None = None, fetcher: InputFetcher | None = None,
                 measuring: Measuring | None = None) -> None:
        self.attempt = attempt
        self.paths = paths
        self.ffmpeg = ffmpeg
        self.encoders = encoders
        self.emit = emit
        self.cpu_count = cpu_count
        self._given_gst_launch = gst_launch
        self.policy = policy or InputPolicy()
        """What inputs and stream outputs this worker allows (none local, public hosts only, by default)."""
        self.measuring = measuring or Measuring()
        self.tap: deque[str] | None = None
        """While set, the process's stderr lines are also kept here (the quality pass reads its scores so)."""
        self.filter = JobLogFilter(paths.work_dir)
        self.seq = 0
        self.diagnosis = Diagnosis()
        self.output: OutputPlan | None = None
        """The file output's partial and final names, once known (None for streams and null jobs)."""
        self.fetcher = fetcher
        """Fetches stored inputs and knows the master's data channel (None: this worker moves no files)."""
        self.pinned = contextlib.ExitStack()
        """The cached input this attempt reads, kept from eviction until the attempt ends."""

    @functools.cached_property
    def gst_launch(self) -> str | None:
        """GStreamer runs only where detection found its elements (the worker offers the engine). Worked out
        when a job first asks, not up front: null jobs come by the thousand and never do."""
        if self._given_gst_launch:
            return self._given_gst_launch
        has_elements = any(engine_of(info) == "gstreamer" for info in self.encoders.values() if isinstance(info, dict))
        return find_gstreamer() if has_elements else None

    def log(self, stream: str, text: str) -> None:
        text = self.filter.line(text)
        self.seq += 1
        if stream == "stderr":
            self.diagnosis.add(text)
        self.emit(Event("log", self.attempt.job, self.attempt.attempt, (self.seq, time.time(), stream, text)))

    def finish(self, status: str, **fields: Any) -> None:
        self.attempt.done = True
        self.emit(Event("finished", self.attempt.job, self.attempt.attempt, {"status": status, **fields}))

    def run(self) -> None:
        """The thread body: always ends with exactly one `finished` event."""
        try:
            with self.pinned:
                self._run()
        except AttemptFailed as exc:
            self._discard()
            self.log("worker", f"failed: {exc}")
            self.finish("failed", failure=exc.failure.value, error=str(exc))
        except Exception as exc:  # a bug here must fail the attempt, never kill the worker
            self._discard()
            self.log("worker", f"internal error: {exc!r}")
            self.finish("failed", failure=Failure.ENCODER_ERROR.value, error=f"worker error: {exc!r}")

    def _discard(self) -> None:
        """Delete this attempt's own partial file (never the published name: another attempt may own it)."""
        if self.output is not None:
            discard(self.output.partial)

    def _run(self) -> None:
        attempt, spec = self.attempt, self.attempt.spec
        started = time.monotonic()  # for the wall_seconds interval; events carry wall-clock stamps
        if spec["engine"] == "null":
            self.emit(Event("started", attempt.job, attempt.attempt, time.time()))
            self.finish("completed", metrics=dict(NULL_METRICS), output=None)
            return
        problem = space_problem(self.paths.work_dir)
        if problem:
            raise AttemptFailed(Failure.ENCODER_ERROR, problem)
        engine = choose_engine(spec, self.encoders, ffmpeg=self.ffmpeg is not None,
                               gstreamer=self.gst_launch is not None)
        context, prepare_seconds = self._prepare(engine)
        try:
            plain = BUILDERS[engine](context)
        except UnsupportedJob as exc:
            raise AttemptFailed(Failure.INVALID_INPUT, str(exc)) from None
        inline = inline_comparison(engine, self.ffmpeg, self.measuring, context) if self.output is not None else None
        command = plain if inline is None else replace(plain, argv=[*plain.argv, *inline.inline_args()])
        self.log("worker", "$ " + " ".join(command.argv))
        self.emit(Event("started", attempt.job, attempt.attempt, time.time()))
        duration = float(spec["params"]["duration"])
        timeout = spec.get("timeout") or default_timeout(duration)
        self.tap = None if inline is None else deque(maxlen=TAP_LINES)
        began = time.monotonic()
        run = self._execute(command, self._progress_parser(command), timeout, energy=True)
        scored, self.tap = self.tap, None
        if inline is not None and run.reason is None and run.code != 0:
            # Encoding and measuring in one process: its failure may be the measurement's alone, which must
            # never fail a job. The plain encode decides (a failing source fails again, for its own reason),
            # in what is left of the timeout; the job's cost counts both runs.
            inline, command, first = None, plain, run
            left = timeout - (time.monotonic() - began)
            self.log("worker", f"the encode measuring quality inline exited with {run.code}: encoding again "
                     "without the measurement")
            self._discard()
            self.attempt.progress = {}
            if left <= 0:
                run = Finished(run.code, "timeout", run.usage, run.energy)
            else:
                self.log("worker", "$ " + " ".join(command.argv))
                run = _both(first, self._execute(command, self._progress_parser(command), left, energy=True))
        code, reason = run.code, run.reason
        wall = time.monotonic() - started
        metrics = {**attempt.progress, "engine": engine, "encoder": command.encoder,
                   "wall_seconds": round(wall, 3), "prepare_seconds": round(prepare_seconds, 3),
                   **cost_metrics(run.usage, run.energy)}
        metrics.pop("progress", None)
        if "frames" in metrics and wall > 0:
            metrics["avg_fps"] = round(metrics["frames"] / max(wall - prepare_seconds, 1e-3), 2)
        written = self.output.partial if self.output is not None else None
        if written is not None and os.path.exists(written):
            metrics["output_bytes"] = os.path.getsize(written)
        if reason is None and code == 0 and inline is not None:
            self._inline_scores(inline, metrics, scored or ())
        elif reason is None and code == 0 and self.output is not None:
            # the pass fits in what is left of the job's timeout: the master's deadline covers both
            reason = self._measure_quality(context, metrics, timeout - (time.monotonic() - started))
        if reason is None and code == 0:
            # The file keeps its partial name: the agent publishes it once the master accepts this attempt.
            published: dict[str, Any] = {"output": self.output.final, "partial": self.output.partial} \
                if self.output is not None else {"output": context.output}
            if self._stores_output():
                published["output_file"] = self._deliver(engine, metrics)
            self.finish("completed", metrics=metrics, **published)
            return
        self._discard()
        if reason == "canceled":
            self.finish("canceled", error=attempt.cancel_reason, failure=Failure.CANCELED.value, metrics=metrics)
        elif reason == "timeout":
            self.finish("failed", failure=Failure.TIMEOUT.value, metrics=metrics,
                        error=f"no result within the job's timeout of {timeout:g}s; the process was killed")
        else:
            self.finish("failed", failure=Failure.ENCODER_ERROR.value, metrics=metrics,
                        error=self.diagnosis.message(PROGRAM[engine], code, written))

    def _inline_scores(self, comparison: QualityPass, metrics: dict[str, Any], lines: Iterable[str]) -> None:
        """The numbers the encode printed as it measured (its cpu_seconds and energy include the measuring)."""
        metrics.update(quality=comparison.mode, quality_inline=True)
        try:
            metrics.update(comparison.scores(lines))
        except QualityError as exc:
            metrics["quality_error"] = str(exc)
            self.log("worker", f"quality not measured: {exc}")

    def _measure_quality(self, context: JobContext, metrics: dict[str, Any], timeout: float) -> str | None:
        """Compare the output with its source (`--quality`) into `metrics`. A comparison that cannot be made
        or fails leaves the job completed, saying why (`quality_error`); only a cancel ends it ('canceled')."""
        mode = quality_mode(context.params)
        metrics["quality"] = mode
        if mode == "none":
            return None
        begin = time.monotonic()
        try:
            if timeout < 1.0:
                raise QualityError("no time was left in the job's timeout for the comparison")
            comparison = quality_pass(mode, self.ffmpeg, self.measuring, context)
            assert self.ffmpeg is not None
            argv = comparison.argv(self.ffmpeg)
            self.log("worker", f"measuring quality ({mode}): $ " + " ".join(argv))
            self.tap = deque(maxlen=TAP_LINES)
            progress = ComparisonProgress(self.attempt.progress, comparison.duration)
            run = self._execute(Command(argv=argv, progress_format="none"), progress, timeout)
            if run.reason is not None:
                if run.reason == "canceled":
                    return "canceled"
                raise QualityError(f"the comparison took longer than the {timeout:.0f}s left of the job's timeout "
                                   "and was stopped")
            if run.code != 0:
                raise QualityError(f"the comparison's ffmpeg exited with {run.code}")
            metrics.update(comparison.scores(self.tap))
            metrics["quality_cpu_seconds"] = run.usage.cpu_seconds
        except QualityError as exc:
            metrics["quality_error"] = str(exc)
            self.log("worker", f"quality not measured: {exc}")
        finally:
            self.tap = None
            metrics["quality_seconds"] = round(time.monotonic() - begin, 3)
        return None

    def _progress_parser(self, command: Command) -> ProgressParser | None:
        params = self.attempt.spec["params"]
        if command.progress_format == "ffmpeg":
            return FfmpegProgress(float(params["duration"]))
        if command.progress_format == "gstreamer":
            return GstProgress(float(params["duration"]), float(params["fps"]))
        return None

    def _prepare(self, engine: str) -> tuple[JobContext, float]:
        spec, params = self.attempt.spec, self.attempt.spec["params"]
        if engine == "ffmpeg" and self.ffmpeg is None:
            raise AttemptFailed(Failure.ENCODER_ERROR, f"ffmpeg is not installed on this worker: {FFMPEG_HINT}")
        if engine == "gstreamer" and self.gst_launch is None:
            raise AttemptFailed(Failure.ENCODER_ERROR, "GStreamer (gst-launch-1.0 with a usable encoder element) "
                                "is not available on this worker")
        if engine not in BUILDERS:
            raise AttemptFailed(Failure.INVALID_INPUT, f"this worker has no engine {engine!r}")
        encoder = self._pick_encoder(params["codec"], engine)
        codec = self.encoders[encoder].get("codec", params["codec"])  # h264 also when the job names h264_nvenc
        begin = time.monotonic()
        try:
            output = resolve_output(self.paths.work_dir, self.paths.output_roots, spec.get("tenant"),
                                    self.attempt.job, params.get("output"),
                                    ffmpeg_engine.CONTAINER_FOR_CODEC.get(codec, ".mkv"))
        except OutputRefused as exc:
            raise AttemptFailed(Failure.INVALID_INPUT, str(exc)) from None
        streaming = is_stream(output)
        if not streaming:
            self.output = plan(output, self.attempt.job, self.attempt.attempt)
            output = self.attempt.partial = self.output.partial
        source: str | None = None
        try:
            if streaming:
                check_stream_output(output, self.policy)
            elif self.paths.inputs.resolve() in Path(output).parents:
                raise SourceRefused(f"output {params.get('output')!r} is inside this worker's cache of generated "
                                    "sources")
            if params.get("input"):
                source = check_source(params["input"], self.policy)
                self.filter.url_input = is_url(source)
        except SourceUnavailable as exc:
            raise AttemptFailed(Failure.ENCODER_ERROR, str(exc)) from None  # retried: DNS may be back
        except SourceRefused as exc:
            raise AttemptFailed(Failure.INVALID_INPUT, str(exc)) from None
        source = self._stored_input(params.get("input_file")) or source
        if source is None and engine == "ffmpeg":
            assert self.ffmpeg is not None
            self.log("worker", f"preparing test source {params['resolution']}@{params['fps']} "
                     f"for {params['duration']:g}s")
            try:
                source = str(ensure_generated(self.ffmpeg, self.paths.inputs, params["resolution"], params["fps"],
                                              float(params["duration"]), audio=streaming))
            except InputError as exc:
                raise AttemptFailed(Failure.ENCODER_ERROR, str(exc)) from None
            if float(params["duration"]) > MAX_GENERATED_SECONDS:
                spec = {**spec, "_loop_input": True}
        audio = audio_encoder(self.gst_launch) if engine == "gstreamer" and streaming else None
        input_audio = bool(source) and audio is not None and self._input_audio(str(source))
        context = JobContext(job_id=self.attempt.job, attempt=self.attempt.attempt, spec=spec,
                             work_dir=self.paths.work_dir, input_path=source, output=output, encoder=encoder,
                             ffmpeg=self.ffmpeg, cpu_count=self.cpu_count, gst_launch=self.gst_launch,
                             audio_encoder=audio, input_audio=input_audio)
        return context, time.monotonic() - begin

    # ---- files across machines (docs/files.md): a stored input in, a stored output out ---------------

    def _stored_input(self, input_file: dict[str, Any] | None) -> str | None:
        """The job's stored input, if it names one, fetched (once per file) into the cache and pinned there
        until the attempt ends."""
        if input_file is None:
            return None
        if self.fetcher is None:
            raise AttemptFailed(Failure.ENCODER_ERROR, "this worker cannot fetch stored inputs")
        self.log("worker", f"fetching the input {input_file['name']!r} ({input_file['size']} bytes, "
                 f"sha256 {input_file['sha256'][:12]}…)")
        try:
            path = self.pinned.enter_context(self.fetcher.input(self.attempt.job, self.attempt.attempt, input_file))
        except InputMissing as exc:
            raise AttemptFailed(Failure.INVALID_INPUT, str(exc)) from None
        except FfrtmpError as exc:  # no data channel, a mismatch after every try, a full cache, a lost master
            raise AttemptFailed(Failure.ENCODER_ERROR, f"fetching the input failed: {exc}") from None
        return str(path)

    def _stores_output(self) -> bool:
        """A file output in the job's own directory goes to the master's store, when it has one."""
        if self.output is None or self.fetcher is None or self.fetcher.channel.peer is None:
            return False
        return self.paths.outputs.resolve() in Path(self.output.final).parents

    def _deliver(self, engine: str, metrics: dict[str, Any]) -> dict[str, Any]:
        """Verify and upload the output; the RESULT's `output_file`. Any failure fails the attempt (its file
        is discarded by `run`), so an unverified or unstored file never becomes the job's output."""
        assert self.output is not None and self.fetcher is not None and self.ffmpeg is not None
        written = self.attempt.progress.get("out_time") if engine == "ffmpeg" else None
        expected = float(written) if isinstance(written, (int, float)) and written > 0 \
            else float(self.attempt.spec["params"]["duration"])
        begin = time.monotonic()
        try:
            stored = deliver(self.fetcher.channel, self.ffmpeg, self.attempt.job, self.attempt.attempt,
                             Delivery(Path(self.output.partial), Path(self.output.final).name, expected),
                             self.attempt.cancel)
        except StaleAttempt as exc:
            raise AttemptFailed(Failure.CANCELED, str(exc)) from None
        except FfrtmpError as exc:
            raise AttemptFailed(Failure.ENCODER_ERROR, f"the output was not stored: {exc}") from None
        metrics["deliver_seconds"] = round(time.monotonic() - begin, 3)
        self.log("worker", f"output stored: {stored['size']} bytes, sha256 {stored['sha256']}")
        return stored

    def _input_audio(self, source: str) -> bool:
        """Whether a GStreamer stream can carry the input's audio: it has a track GStreamer can decode and cut."""
        codec, why = audio_codec(self.ffmpeg, source)
        if why is not None:
            self.log("worker", f"the stream leaves out the input's audio, if any: {why}")
            return False
        if codec is None:
            return False
        problem = audio_problem(self.gst_launch, codec)
        if problem is not None:
            self.log("worker", f"the stream leaves out the input's audio: {problem}")
        return problem is None

    def _pick_encoder(self, codec: str, engine: str) -> str:
        encoder = best_for(codec, self.encoders, engine)
        if encoder is None:
            raise AttemptFailed(Failure.ENCODER_ERROR, f"no usable {codec} encoder for {engine} on this worker")
        return encoder

    def _execute(self, command: Command, parser: ProgressParser | None, timeout: float,
                 energy: bool = False) -> Finished:
        """Run to the end, a cancel or the deadline, sampling what the process tree uses (and, with `energy`,
        the energy meter's counters) with each pass of the read loop."""
        argv = command.argv
        nice = nice_path()
        if nice:
            argv = [nice, "-n", str(NICE), *argv]
        prefix, preexec = engine_spawn()  # killed with the worker (childdeath.py)
        argv = [*prefix, *argv]
        meter = EnergyMeter(watts_per_core=self.measuring.watts_per_core, nvidia_smi=self.measuring.nvidia_smi,
                            gpu_encoder=is_gpu_encoder(command.encoder)) if energy else None
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=preexec,
                                    env={**child_environment(), **command.env})
        except OSError as exc:
            if meter is not None:
                meter.finish(0.0)  # stops its GPU sampler
            raise AttemptFailed(Failure.ENCODER_ERROR, f"cannot start {command.argv[0]}: {exc}") from None
        self.attempt.pid = proc.pid
        usage = TreeUsage(proc.pid)
        deadline = time.monotonic() + timeout
        reason: str | None = None
        with selectors.DefaultSelector() as selector:
            assert proc.stdout is not None and proc.stderr is not None
            buffers = {proc.stdout.fileno(): LineSplitter(), proc.stderr.fileno(): LineSplitter()}
            streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                selector.register(pipe.fileno(), selectors.EVENT_READ)
            while buffers:
                usage.sample()
                if meter is not None:
                    meter.sample()
                if reason is None and self.attempt.cancel.is_set():
                    reason = "canceled"
                    self.log("worker", f"canceling: {self.attempt.cancel_reason}")
                    _stop(proc)
                elif reason is None and time.monotonic() > deadline:
                    reason = "timeout"
                    self.log("worker", f"timeout after {timeout:g}s: stopping the process")
                    _stop(proc)
                for key, _ in selector.select(timeout=0.2):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        self._lines(streams[fd], buffers.pop(fd).close(), parser)
                        continue
                    self._lines(streams[fd], buffers[fd].feed(chunk), parser)
        proc.stdout.close()
        proc.stderr.close()
        code, rusage = reap(proc)
        used = usage.finish(rusage)
        return Finished(code, reason, used, meter.finish(used.cpu_seconds) if meter is not None else None)

    def _lines(self, stream: str, lines: list[str], parser: ProgressParser | None) -> None:
        """Progress lines update the snapshot; the others become LOG events."""
        for line in lines:
            if self.tap is not None and stream == "stderr":
                self.tap.append(line)
            if stream == "stdout" and parser is not None:
                changed = parser.feed(line)
                if changed:
                    self.attempt.progress = dict(parser.snapshot)
                if changed or parser.consumes_all_lines:
                    continue
            self.log(stream, line)


@functools.lru_cache(maxsize=1)
def nice_path() -> str | None:
    """`nice`, looked up once: a PATH search per job costs more than a short job's orchestration."""
    return shutil.which("nice")


def _both(first: Finished, second: Finished) -> Finished:
    """The second run's outcome, with what both cost."""
    usage = replace(second.usage, cpu_seconds=round(first.usage.cpu_seconds + second.usage.cpu_seconds, 3),
                    peak_rss_bytes=max(first.usage.peak_rss_bytes, second.usage.peak_rss_bytes))
    energy = second.energy
    if first.energy is not None and second.energy is not None:
        energy = replace(second.energy, joules=round(first.energy.joules + second.energy.joules, 3))
    return replace(second, usage=usage, energy=energy)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group; a watchdog sends SIGKILL after the grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)

    def kill_later() -> None:
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    threading.Thread(target=kill_later, daemon=True).start()
