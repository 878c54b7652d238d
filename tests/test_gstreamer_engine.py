"""The GStreamer engine: its pipelines as argv lists, and real gst-launch-1.0 runs on tiny sources."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.failures import Failure
from ffrtmp.jobspec import validate_submission
from ffrtmp.worker.engines import JobContext, UnsupportedJob
from ffrtmp.worker.engines.gstreamer import build, quoted
from ffrtmp.worker.gst_encoders import detect as detect_elements
from ffrtmp.worker.runner import Attempt
from tests.conftest import _require, child_processes, eventually
from tests.test_runner import Harness, assert_process_group_gone, finish, make_attempt, own_dir, partial_of

GST = "/usr/bin/gst-launch-1.0"
LONG: dict[str, Any] = {"duration": 86400}
"""A day of frames: far longer than any test, so it is stopped by a cancel or a timeout."""


def context(tmp_path: Path, *, encoder: str = "x264enc", output: str | None = None, input_path: str | None = None,
            audio: str | None = "avenc_aac", input_audio: bool = False, **submit: Any) -> JobContext:
    raw = {"scenario": "t", "resolution": "320x180", "fps": 10, "duration": 3, "codec": "h264", "bitrate": "300k",
           **submit}
    return JobContext(job_id="job-1", attempt=1, spec=validate_submission(raw).to_dict(), work_dir=tmp_path,
                      input_path=input_path, output=output or str(tmp_path / "outputs" / "job-1.mp4"),
                      encoder=encoder, ffmpeg=None, gst_launch=GST, audio_encoder=audio, input_audio=input_audio)


def after(argv: list[str], token: str, count: int = 1) -> list[str]:
    index = argv.index(token)
    return argv[index + 1:index + 1 + count]


def chain(argv: list[str]) -> str:
    return " ".join(argv)


# ---- pipelines -----------------------------------------------------------------------------------------


def test_a_generated_file_job(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    command = build(ctx)
    argv = command.argv
    assert argv[:2] == [GST, "-e"]
    assert all(isinstance(token, str) for token in argv)
    assert (command.progress_format, command.encoder) == ("gstreamer", "x264enc")
    assert after(argv, "videotestsrc", 2) == ["is-live=false", "num-buffers=30"]
    assert "video/x-raw,format=I420,width=320,height=180,framerate=10/1" in argv
    assert after(argv, "progressreport", 4) == ["name=progress", "update-freq=1", "silent=false", "format=time"]
    assert "x264enc bitrate=300 speed-preset=ultrafast key-int-max=20 ! h264parse" in chain(argv)
    assert argv[-5:] == ["mp4mux", "name=mux", "!", "filesink", f'location="{ctx.output}"']
    assert "audiotestsrc" not in argv and "rtmpsink" not in argv


def test_a_live_stream_is_paced_has_sine_audio_and_goes_to_rtmpsink(tmp_path: Path) -> None:
    url = "rtmp://live.example.com/app/key"
    argv = build(context(tmp_path, output=url, duration=1.5)).argv
    assert after(argv, "videotestsrc", 2) == ["is-live=true", "num-buffers=15"]
    assert "tune=zerolatency" in argv
    assert after(argv, "audiotestsrc", 5) == ["is-live=true", "wave=sine", "freq=440", "samplesperbuffer=960",
                                              "num-buffers=75"]
    assert "avenc_aac ! aacparse ! queue ! mux." in chain(argv)
    assert argv[-6:] == ["flvmux", "name=mux", "streamable=true", "!", "rtmpsink", f'location="{url}"']


def test_a_stream_without_an_aac_element_is_video_only(tmp_path: Path) -> None:
    argv = build(context(tmp_path, output="rtmp://h/app/k", audio=None)).argv
    assert "audiotestsrc" not in argv
    assert "flvmux" in argv


def test_a_given_file_is_decoded_scaled_and_cut_at_the_duration(tmp_path: Path) -> None:
    source = str(tmp_path / "in put.mp4")
    argv = build(context(tmp_path, input_path=source, output="rtmp://h/app/k", duration=2)).argv
    assert argv[2:6] == ["filesrc", f'location="{source}"', "!", "decodebin"]
    assert "decodebin ! videoconvert ! videoscale ! videorate ! video/x-raw" in chain(argv)
    assert ("video/x-raw,format=I420,width=320,height=180,framerate=10/1 ! queue ! identity eos-after=21 ! "
            "identity eos-after=21 ! progressreport") in chain(argv)
    assert "videotestsrc" not in argv
    assert "audiotestsrc" not in argv  # the input's video only, never a made-up track


def test_a_stream_from_an_input_with_audio_carries_it_cut_at_the_duration(tmp_path: Path) -> None:
    source = str(tmp_path / "talk.mp4")
    argv = build(context(tmp_path, input_path=source, input_audio=True, output="rtmp://h/app/k", duration=2)).argv
    assert argv[2:7] == ["filesrc", f'location="{source}"', "!", "decodebin", "name=in"]
    assert ("in. ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! audiobuffersplit "
            "output-buffer-duration=1/50 ! queue ! identity eos-after=101 ! identity eos-after=101 ! audioconvert ! "
            "avenc_aac ! aacparse ! queue ! mux.") in chain(argv)
    assert "audiotestsrc" not in argv


def test_an_input_with_audio_written_to_a_file_keeps_the_video_only(tmp_path: Path) -> None:
    """As FFmpeg's file mode (`-an`): only streams carry audio."""
    argv = build(context(tmp_path, input_path=str(tmp_path / "talk.mp4"), input_audio=True)).argv
    assert "name=in" not in argv and "in." not in argv and "audioconvert" not in argv


def test_a_url_input_uses_uridecodebin(tmp_path: Path) -> None:
    argv = build(context(tmp_path, input_path="rtmp://origin/live/cam")).argv
    assert argv[2:4] == ["uridecodebin", 'uri="rtmp://origin/live/cam"']


@pytest.mark.parametrize(("suffix", "muxer"), [(".mp4", "mp4mux"), (".mkv", "matroskamux"), (".webm", "webmmux"),
                                               (".ts", "mpegtsmux"), (".mov", "qtmux"), (".flv", "flvmux"),
                                               (".weird", "matroskamux")])
def test_the_muxer_follows_the_output_suffix(tmp_path: Path, suffix: str, muxer: str) -> None:
    argv = build(context(tmp_path, output=str(tmp_path / f"out{suffix}"))).argv
    assert argv[-5] == muxer


def test_vp9_needs_no_parser(tmp_path: Path) -> None:
    argv = build(context(tmp_path, encoder="vp9enc", codec="vp9", output=str(tmp_path / "o.webm"))).argv
    assert "h264parse" not in argv
    assert "target-bitrate=300000" in argv and "deadline=1" in argv


def test_hardware_elements_get_their_own_properties(tmp_path: Path) -> None:
    argv = build(context(tmp_path, encoder="nvh264enc", output="rtmp://h/app/k")).argv
    assert after(argv, "nvh264enc", 4) == ["bitrate=300", "preset=low-latency-hq", "rc-mode=cbr", "gop-size=20"]


def test_rtmp_carries_h264_only(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedJob, match="h265"):
        build(context(tmp_path, encoder="x265enc", codec="h265", output="rtmp://h/app/k"))


def test_quoting_keeps_paths_one_value() -> None:
    assert quoted("a b") == '"a b"'
    assert quoted('say "hi"') == '"say \\"hi\\""'
    assert quoted("back\\slash") == '"back\\\\slash"'


# ---- real runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gst_encoder_map(gst_launch: str, gst_inspect: str) -> dict[str, dict[str, Any]]:
    found = {e.name: e.to_dict() for e in detect_elements(gst_inspect, gst_launch)}
    _require("x264enc" if found.get("x264enc", {}).get("available") else None, "x264enc (gstreamer1.0-plugins-ugly)")
    return found


@pytest.fixture
def harness(tmp_path: Path, gst_encoder_map: dict[str, dict[str, Any]]) -> Harness:
    return Harness(tmp_path / "work", None, gst_encoder_map)


def gst_attempt(job: str = "job-1", **submit: Any) -> Attempt:
    return make_attempt(job, engine="gstreamer", **submit)


def probe(ffprobe: str, path: str) -> dict[str, Any]:
    done = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=codec_name,width,height,nb_frames:format=duration", "-of", "json", path],
                          capture_output=True, text=True, check=True, timeout=30)
    found: dict[str, Any] = json.loads(done.stdout)
    return {**found["streams"][0], "duration": float(found["format"]["duration"])}


def gst_processes_writing(output: Path) -> list[psutil.Process]:
    return child_processes("gst-launch-1.0", lambda argv: any(str(output) in arg for arg in argv))


def test_a_completed_gstreamer_run(harness: Harness, ffprobe: str) -> None:
    recorder = harness.run(gst_attempt("job-gst", duration=2))
    result = recorder.finished()
    assert result["status"] == "completed", result
    assert result["output"] == str(own_dir(harness, "job-gst") / "job-gst.mp4")
    output = Path(result["partial"])  # published by the agent once the master accepts the attempt
    assert output == partial_of(harness, "job-gst", "job-gst.mp4")
    metrics = result["metrics"]
    assert (metrics["engine"], metrics["encoder"]) == ("gstreamer", "x264enc")
    assert (metrics["frames"], metrics["out_time"]) == (20, 2.0)
    assert metrics["output_bytes"] == output.stat().st_size
    stream = probe(ffprobe, str(output))
    assert (stream["codec_name"], stream["width"], stream["height"], stream["nb_frames"]) == ("h264", 160, 120, "20")
    texts = recorder.texts()
    assert texts[0].startswith("$ ") and " -e videotestsrc " in texts[0]  # generated in the pipeline: no prep
    assert any(text.startswith("Setting pipeline to PLAYING") for text in texts)  # gst-launch's own lines
    assert not any(text.startswith("progress (") for text in texts)  # progress is parsed, not logged
    assert not harness.paths.inputs.exists()


@pytest.mark.parametrize(("source_fps", "fps"), [(10, 10), (4, 10), (25, 10)])
def test_a_given_input_is_cut_at_the_duration_and_converted_to_the_fps(harness: Harness, ffprobe: str,
                                                                       source_fps: int, fps: int) -> None:
    source = harness.run(gst_attempt(f"src-{source_fps}", duration=3, fps=source_fps)).finished()["partial"]
    result = harness.run(gst_attempt("job-cut", duration=1.5, fps=fps, input=source, output="cut.mp4")).finished()
    assert result["status"] == "completed", result
    stream = probe(ffprobe, result["partial"])
    assert (stream["codec_name"], stream["width"], stream["nb_frames"]) == ("h264", 160, "15")
    assert stream["duration"] == pytest.approx(1.5, abs=0.01)


def test_a_vp9_job_writes_webm(harness: Harness, ffprobe: str) -> None:
    result = harness.run(gst_attempt("job-vp9", codec="vp9")).finished()
    assert result["status"] == "completed", result
    assert result["output"].endswith("job-vp9.webm")
    assert result["metrics"]["encoder"] == "vp9enc"
    assert probe(ffprobe, result["partial"])["codec_name"] == "vp9"


def test_auto_runs_a_job_naming_an_element_on_gstreamer_into_the_codecs_container(harness: Harness) -> None:
    result = harness.run(make_attempt("job-named", engine="auto", codec="x264enc")).finished()
    assert result["status"] == "completed", result
    assert (result["metrics"]["engine"], result["metrics"]["encoder"]) == ("gstreamer", "x264enc")
    assert result["output"].endswith("job-named.mp4")


def test_shell_and_pipeline_syntax_in_the_output_stays_a_file_name(harness: Harness) -> None:
    nasty = 'clips/a "b" ! fakesink $(id) `x`; c.mkv'
    result = harness.run(gst_attempt("job-nasty", output=nasty)).finished()
    assert result["status"] == "completed", result
    expected = own_dir(harness, "job-nasty") / nasty
    assert result["output"] == str(expected)
    written = Path(result["partial"])
    assert written.parent == expected.parent and written.stat().st_size > 0
    assert sorted(p.name for p in expected.parent.iterdir()) == [written.name]


def test_progress_reaches_the_heartbeat_snapshot_while_running(harness: Harness) -> None:
    attempt = gst_attempt("job-progress", **LONG)
    recorder, thread = harness.start(attempt)
    eventually(lambda: attempt.progress.get("out_time", 0) >= 1, timeout=30, message="progress from gst-launch")
    snapshot = attempt.progress
    assert snapshot["frames"] == int(snapshot["out_time"] * 10)
    assert 0 <= snapshot["progress"] < 1
    attempt.cancel.set()
    finish(thread)
    assert recorder.finished()["status"] == "canceled"


def test_cancel_stops_gst_launch_and_removes_the_partial_output(harness: Harness) -> None:
    attempt = gst_attempt("job-cancel", **LONG)
    recorder, thread = harness.start(attempt)
    output = partial_of(harness, "job-cancel", "job-cancel.mp4")
    eventually(lambda: attempt.progress.get("frames"), timeout=30, message="progress from gst-launch")
    process = eventually(lambda: gst_processes_writing(output), message="the gst-launch process")[0]
    assert process.nice() >= 10  # runs at a lower priority
    attempt.cancel.set()
    finish(thread)
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("canceled", Failure.CANCELED.value)
    assert_process_group_gone(process.pid)
    assert not output.exists()


def test_timeout_stops_a_long_gstreamer_job(harness: Harness) -> None:
    attempt = gst_attempt("job-slow", timeout=0.5, **LONG)
    recorder, thread = harness.start(attempt)
    finish(thread)
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.TIMEOUT.value)
    assert not any(own_dir(harness, "job-slow").iterdir())


def test_an_unreachable_rtmp_server_fails_with_gstreamers_error(harness: Harness) -> None:
    recorder = harness.run(gst_attempt("job-live", output="rtmp://127.0.0.1:1/live/test", duration=1))
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert result["error"].startswith("gst-launch-1.0 exited with 1: ERROR: from element")
    assert "rtmp://127.0.0.1:1/live/test" in result["error"]


def test_h265_to_rtmp_is_refused_before_starting(harness: Harness) -> None:
    recorder = harness.run(gst_attempt(codec="h265", output="rtmp://127.0.0.1:1/live/x"))
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.INVALID_INPUT.value)
    assert "started" not in recorder.kinds()


def test_a_worker_without_gstreamer_fails_a_gstreamer_job_clearly(tmp_path: Path, ffmpeg: str) -> None:
    recorder = Harness(tmp_path / "work", ffmpeg, {}).run(gst_attempt())
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert "GStreamer" in result["error"] and "not available" in result["error"]
