"""AttemptRunner with a real ffmpeg on tiny inputs: results, logs, caching, cancel, timeout and failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.failures import Failure
from ffrtmp.jobspec import validate_submission
from ffrtmp.worker import encoders as encoder_probe
from ffrtmp.worker import runner as runner_module
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths
from ffrtmp.worker.sources import InputPolicy
from tests.conftest import child_processes, eventually

TINY: dict[str, Any] = {"resolution": "160x120", "fps": 10, "duration": 1, "codec": "h264", "bitrate": "100k"}
LONG: dict[str, Any] = {**TINY, "duration": 86400}
"""A day of output: the 120 s generated source is looped, so the encode runs far longer than any test."""


@pytest.fixture(scope="module")
def encoder_map(ffmpeg: str) -> dict[str, dict[str, Any]]:
    """As `Capabilities.encoder_map()` gives it to the runner."""
    return {e.name: e.to_dict() for e in encoder_probe.detect(ffmpeg)}


class Recorder:
    """The runner's `emit`: keeps every event, from whichever thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def logs(self) -> list[tuple[int, float, str, str]]:
        return [e.data for e in self.events if e.kind == "log"]

    def texts(self) -> list[str]:
        return [data[3] for data in self.logs()]

    def finished(self) -> dict[str, Any]:
        done = [e for e in self.events if e.kind == "finished"]
        assert len(done) == 1, f"expected exactly one 'finished', got {len(done)}"
        result: dict[str, Any] = done[0].data
        return result


def make_attempt(job: str = "job-1", *, engine: str = "ffmpeg", timeout: float | None = None,
                 params: dict[str, Any] | None = None, **submit: Any) -> Attempt:
    given = {**TINY, **submit}
    checked = validate_submission({"scenario": "t", **given}).params
    spec = {"scenario": "t", "engine": engine, "queue": "default", "priority": "medium",
            "params": {**checked, **(params or {})}, "labels": {}, "timeout": timeout, "tenant": "acme"}
    return Attempt(job=job, attempt=1, spec=spec, received_at=0.0)


class Harness:
    """A runner as a test's worker: by default it reads inputs under the work dir's parent (the test's tmp_path)
    and reaches 127.0.0.1 (the test nginx-rtmp); pass `policy` to test the worker's defaults."""

    def __init__(self, work: Path, ffmpeg: str | None, encoders: dict[str, Any],
                 policy: InputPolicy | None = None) -> None:
        self.paths = WorkerPaths(work)
        self.ffmpeg = ffmpeg
        self.encoders = encoders
        self.policy = policy or InputPolicy(input_roots=(work.parent,), allow_private_network=True)

    def start(self, attempt: Attempt) -> tuple[Recorder, threading.Thread]:
        recorder = Recorder()
        runner = AttemptRunner(attempt, self.paths, self.ffmpeg, self.encoders, recorder, policy=self.policy)
        thread = threading.Thread(target=runner.run, name=f"test-{attempt.job}", daemon=True)
        thread.start()
        return recorder, thread

    def run(self, attempt: Attempt) -> Recorder:
        recorder, thread = self.start(attempt)
        finish(thread)
        return recorder


def finish(thread: threading.Thread, timeout: float = 60.0) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), "the runner thread did not end"


@pytest.fixture
def harness(tmp_path: Path, ffmpeg: str, encoder_map: dict[str, dict[str, Any]]) -> Harness:
    return Harness(tmp_path / "work", ffmpeg, encoder_map)


def probe(ffprobe: str, path: str) -> dict[str, Any]:
    done = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=codec_name,width,height", "-of", "json", path],
                          capture_output=True, text=True, check=True, timeout=30)
    stream: dict[str, Any] = json.loads(done.stdout)["streams"][0]
    return stream


def own_dir(harness: Harness, job: str) -> Path:
    """The job's own output directory (tenant acme, as `make_attempt` says)."""
    return (harness.paths.outputs / "acme" / job).resolve()


def partial_of(harness: Harness, job: str, name: str, attempt: int = 1) -> Path:
    stem, suffix = name.rsplit(".", 1)
    return own_dir(harness, job) / f"{stem}.{job}.attempt-{attempt}.partial.{suffix}"


def ffmpeg_processes_writing(output: Path) -> list[psutil.Process]:
    """This test process's ffmpeg children whose command line names `output`."""
    return child_processes("ffmpeg", lambda argv: bool({str(output), f"file:{output}"} & set(argv)))


def assert_process_group_gone(pid: int) -> None:
    assert not psutil.pid_exists(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


# ---- a completed run -----------------------------------------------------------------------------------


def test_a_completed_run(harness: Harness, ffprobe: str) -> None:
    recorder = harness.run(make_attempt("job-ok"))
    result = recorder.finished()
    assert result["status"] == "completed", result
    assert recorder.kinds().count("started") == 1
    assert recorder.kinds()[-1] == "finished"
    assert result["output"] == str(own_dir(harness, "job-ok") / "job-ok.mp4")
    assert not Path(result["output"]).exists(), "published only once the master accepts the attempt"
    output = Path(result["partial"])
    assert output == partial_of(harness, "job-ok", "job-ok.mp4")
    assert output.stat().st_size > 0
    metrics = result["metrics"]
    assert metrics["frames"] > 0
    assert metrics["output_bytes"] == output.stat().st_size
    assert metrics["engine"] == "ffmpeg"
    assert metrics["encoder"] == "libx264"
    assert metrics["wall_seconds"] > 0
    assert "progress" not in metrics
    stream = probe(ffprobe, str(output))
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 160, 120)


def test_logs_are_numbered_and_start_with_the_command_line(harness: Harness, ffmpeg: str) -> None:
    recorder = harness.run(make_attempt())
    logs = recorder.logs()
    assert len(logs) >= 3
    seqs = [data[0] for data in logs]
    assert seqs == list(range(1, len(logs) + 1))
    texts = recorder.texts()
    assert texts[0].startswith("preparing test source 160x120@10")
    command = texts[1]
    assert command.startswith("$ ffmpeg ")  # the program's name, not where it lives on the worker
    assert "-c:v libx264" in command
    assert str(harness.paths.work_dir) not in " ".join(texts) and "file:WORK_DIR/outputs/" in command
    kinds = recorder.kinds()
    assert kinds.index("started") > kinds.index("log")  # the command line is logged before the start
    assert all(stream in ("worker", "stdout", "stderr") for _, _, stream, _ in logs)
    assert any(stream == "stderr" for _, _, stream, _ in logs)  # ffmpeg's own output
    assert not any(stream == "stdout" for _, _, stream, _ in logs)  # `-progress pipe:1` is parsed, not logged
    assert not any(text.startswith(("out_time_us=", "progress=")) for text in texts)


def test_a_given_input_starts_the_log_with_the_command_line(harness: Harness) -> None:
    first = harness.run(make_attempt("job-a"))
    source = first.finished()["partial"]
    recorder = harness.run(make_attempt("job-b", input=source))
    assert recorder.finished()["status"] == "completed"
    assert recorder.texts()[0].startswith("$ ")
    assert f"-i file:WORK_DIR/{Path(source).relative_to(harness.paths.work_dir.resolve())} " in recorder.texts()[0]


def test_the_generated_input_is_cached(harness: Harness) -> None:
    assert harness.run(make_attempt("job-1")).finished()["status"] == "completed"
    files = list(harness.paths.inputs.iterdir())
    assert len(files) == 1
    before = files[0].stat()
    assert harness.run(make_attempt("job-2")).finished()["status"] == "completed"
    assert list(harness.paths.inputs.iterdir()) == files
    after = files[0].stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_a_vp9_job_writes_webm(harness: Harness, ffprobe: str) -> None:
    result = harness.run(make_attempt("job-vp9", codec="vp9")).finished()
    assert result["status"] == "completed", result
    assert result["output"].endswith("job-vp9.webm") and result["partial"].endswith(".partial.webm")
    assert result["metrics"]["encoder"] == "libvpx-vp9"
    stream = probe(ffprobe, result["partial"])
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("vp9", 160, 120)


def test_a_relative_output_lands_in_the_jobs_own_directory(harness: Harness) -> None:
    result = harness.run(make_attempt(output="clips/out file.mp4")).finished()
    assert result["status"] == "completed", result
    assert result["output"] == str(own_dir(harness, "job-1") / "clips" / "out file.mp4")
    assert Path(result["partial"]) == own_dir(harness, "job-1") / "clips" / "out file.job-1.attempt-1.partial.mp4"
    assert Path(result["partial"]).stat().st_size > 0


def test_the_null_engine_completes_without_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the null engine started a process")

    monkeypatch.setattr(runner_module.subprocess, "Popen", no_process)
    recorder = Harness(tmp_path / "work", None, {}).run(make_attempt(engine="null"))
    assert recorder.kinds() == ["started", "finished"]
    result = recorder.finished()
    assert result["status"] == "completed"
    assert result["output"] is None
    assert result["metrics"]["engine"] == "null"


# ---- stopping a run ------------------------------------------------------------------------------------


def test_cancel_stops_the_process_group_and_removes_the_partial_output(harness: Harness) -> None:
    attempt = make_attempt("job-cancel", **LONG)
    recorder, thread = harness.start(attempt)
    eventually(lambda: attempt.progress.get("frames"), timeout=30, message="progress from ffmpeg")
    output = partial_of(harness, "job-cancel", "job-cancel.mp4")
    process = eventually(lambda: ffmpeg_processes_writing(output), message="the ffmpeg process")[0]
    assert os.getpgid(process.pid) == process.pid  # its own process group
    attempt.cancel.set()
    finish(thread)
    result = recorder.finished()
    assert result["status"] == "canceled", result
    assert result["failure"] == Failure.CANCELED.value
    assert result["error"] == "canceled"
    assert result["metrics"]["frames"] > 0
    assert_process_group_gone(process.pid)
    assert not output.exists()
    assert any(text.startswith("canceling: ") for text in recorder.texts())


def test_cancel_reason_is_reported(harness: Harness) -> None:
    attempt = make_attempt("job-superseded", **LONG)
    recorder, thread = harness.start(attempt)
    eventually(lambda: attempt.progress.get("frames"), timeout=30, message="progress from ffmpeg")
    attempt.cancel_reason = "superseded by a newer attempt"
    attempt.cancel.set()
    finish(thread)
    result = recorder.finished()
    assert (result["status"], result["error"]) == ("canceled", "superseded by a newer attempt")


def test_timeout_kills_a_long_job(harness: Harness) -> None:
    attempt = make_attempt("job-slow", timeout=0.5, **LONG)
    recorder, thread = harness.start(attempt)
    output = partial_of(harness, "job-slow", "job-slow.mp4")
    pids: set[int] = set()

    def ffmpeg_seen_or_done() -> bool:
        pids.update(p.pid for p in ffmpeg_processes_writing(output))
        return bool(pids) or not thread.is_alive()

    eventually(ffmpeg_seen_or_done, timeout=30, message="the ffmpeg process")
    finish(thread)
    result = recorder.finished()
    assert result["status"] == "failed", result
    assert result["failure"] == Failure.TIMEOUT.value
    assert "0.5s" in result["error"]
    assert not output.exists()
    for pid in pids:
        assert_process_group_gone(pid)


# ---- failures ------------------------------------------------------------------------------------------


def test_a_missing_input_is_invalid(harness: Harness, tmp_path: Path) -> None:
    recorder = harness.run(make_attempt(input=str(tmp_path / "missing.mp4")))
    result = recorder.finished()
    assert result["status"] == "failed"
    assert result["failure"] == Failure.INVALID_INPUT.value
    assert "missing.mp4" in result["error"]
    assert "started" not in recorder.kinds()


def test_an_output_escaping_the_work_dir_is_invalid(harness: Harness, tmp_path: Path) -> None:
    recorder = harness.run(make_attempt(params={"output": "../../etc/x.mp4"}))
    result = recorder.finished()
    assert result["status"] == "failed"
    assert result["failure"] == Failure.INVALID_INPUT.value
    assert "started" not in recorder.kinds()
    assert not (tmp_path / "etc").exists()


def test_an_input_that_is_not_a_video_is_an_encoder_error(harness: Harness, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is a shopping list, not a video\n")
    recorder = harness.run(make_attempt("job-bad", input=str(bogus)))
    result = recorder.finished()
    assert result["status"] == "failed", result
    assert result["failure"] == Failure.ENCODER_ERROR.value
    assert result["error"].startswith("ffmpeg exited with ")
    assert "Invalid data found when processing input" in result["error"]
    assert not any(own_dir(harness, "job-bad").iterdir())


def test_a_failing_attempt_deletes_only_its_own_partial(tmp_path: Path, ffmpeg: str,
                                                       encoder_map: dict[str, dict[str, Any]]) -> None:
    """F1: attempt 2 fails; the file another attempt published under the same name (a shared output root)
    stays. The old runner unlinked the output path itself."""
    root = tmp_path / "shared"
    root.mkdir()
    published = root / "out.mp4"
    published.write_bytes(b"attempt 1, published")
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is a shopping list, not a video\n")
    harness = Harness(tmp_path / "work", ffmpeg, encoder_map)
    harness.paths = WorkerPaths(tmp_path / "work", output_roots=(root,))
    attempt = make_attempt("job-f1", input=str(bogus), params={"output": str(published)})
    attempt.attempt = 2
    result = harness.run(attempt).finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value), result
    assert published.read_bytes() == b"attempt 1, published"
    assert [p.name for p in root.iterdir()] == ["out.mp4"]


def test_no_usable_encoder_for_the_codec(tmp_path: Path, ffmpeg: str) -> None:
    recorder = Harness(tmp_path / "work", ffmpeg, {}).run(make_attempt(codec="av1"))
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert "no usable av1 encoder" in result["error"]


def test_no_ffmpeg_on_the_worker(tmp_path: Path, encoder_map: dict[str, dict[str, Any]]) -> None:
    recorder = Harness(tmp_path / "work", None, encoder_map).run(make_attempt())
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert "ffmpeg is not installed" in result["error"]


def test_an_unreachable_rtmp_server_fails_the_stream(harness: Harness) -> None:
    url = "rtmp://127.0.0.1:1/live/test"
    recorder = harness.run(make_attempt("job-live", output=url))
    result = recorder.finished()
    assert result["status"] == "failed", result
    assert result["failure"] == Failure.ENCODER_ERROR.value
    assert "-re" in recorder.texts()[1].split()
    assert url in recorder.texts()[1]
    assert "output_bytes" not in result["metrics"]


def test_stop_sends_sigterm_to_the_process_group() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        runner_module._stop(proc)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
