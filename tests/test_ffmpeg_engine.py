"""The FFmpeg engine's command lines: file transcodes and RTMP pushes, always an argv list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ffrtmp.jobspec import validate_submission
from ffrtmp.worker.engines import JobContext
from ffrtmp.worker.engines.ffmpeg import CONTAINER_FOR_CODEC, build, encoder_options, software_preset

FFMPEG = "/usr/bin/ffmpeg"


def context(tmp_path: Path, *, encoder: str = "libx264", output: str | None = None, cpu_count: int = 2,
            loop: bool = False, **submit: Any) -> JobContext:
    raw = {"scenario": "t", "resolution": "640x360", "fps": 25, "duration": 4, "codec": "h264", "bitrate": "800k",
           **submit}
    spec = validate_submission(raw).to_dict()
    if loop:
        spec["_loop_input"] = True
    return JobContext(job_id="job-1", attempt=1, spec=spec, work_dir=tmp_path, input_path=str(tmp_path / "in.mp4"),
                      output=output or str(tmp_path / "outputs" / "job-1.mp4"), encoder=encoder, ffmpeg=FFMPEG,
                      cpu_count=cpu_count)


def value_of(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} appears {argv.count(flag)} times in {argv}"
    return argv[argv.index(flag) + 1]


def test_argv_is_a_list_of_strings_starting_with_ffmpeg(tmp_path: Path) -> None:
    command = build(context(tmp_path))
    assert isinstance(command.argv, list)
    assert all(isinstance(arg, str) for arg in command.argv)
    assert command.argv[0] == FFMPEG
    assert command.progress_format == "ffmpeg"
    assert command.encoder == "libx264"


def test_file_mode_flags(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    argv = build(ctx).argv
    assert value_of(argv, "-i") == "file:" + ctx.input_path  # a name never reads as a protocol
    assert value_of(argv, "-protocol_whitelist") == "file"
    assert "tty" not in value_of(argv, "-format_whitelist").split(",")
    assert value_of(argv, "-c:v") == "libx264"
    assert value_of(argv, "-b:v") == "800k"
    assert value_of(argv, "-maxrate") == "800k"
    assert value_of(argv, "-bufsize") == "1600k"
    assert value_of(argv, "-g") == "50"
    assert value_of(argv, "-r") == "25"
    assert value_of(argv, "-t") == "4"
    assert value_of(argv, "-s") == "640x360"
    assert value_of(argv, "-progress") == "pipe:1"
    assert "-nostdin" in argv
    assert "-re" not in argv
    assert "-stream_loop" not in argv
    assert argv[-2:] == ["-an", "file:" + ctx.output]


def test_gop_is_twice_the_frame_rate(tmp_path: Path) -> None:
    assert value_of(build(context(tmp_path, fps=60)).argv, "-g") == "120"
    assert value_of(build(context(tmp_path, fps=1)).argv, "-g") == "2"


def test_fractional_duration_keeps_its_precision(tmp_path: Path) -> None:
    assert value_of(build(context(tmp_path, duration=1.5)).argv, "-t") == "1.5"


def test_svtav1_gets_only_a_target_bitrate(tmp_path: Path) -> None:
    argv = build(context(tmp_path, codec="av1", encoder="libsvtav1")).argv
    assert value_of(argv, "-b:v") == "800k"
    assert "-maxrate" not in argv
    assert "-bufsize" not in argv
    assert value_of(argv, "-preset") == "10"


@pytest.mark.parametrize("encoder", ["libx265", "libvpx-vp9", "libaom-av1", "h264_nvenc", "h264_qsv"])
def test_other_encoders_get_constrained_bitrate(tmp_path: Path, encoder: str) -> None:
    argv = build(context(tmp_path, encoder=encoder)).argv
    assert value_of(argv, "-c:v") == encoder
    assert (value_of(argv, "-b:v"), value_of(argv, "-maxrate"), value_of(argv, "-bufsize")) == ("800k", "800k",
                                                                                                  "1600k")


def test_rtmp_mode(tmp_path: Path) -> None:
    url = "rtmp://live.example.com/app/stream-key"
    ctx = context(tmp_path, output=url)
    argv = build(ctx).argv
    assert ctx.streaming
    assert "-re" in argv
    assert argv.index("-re") < argv.index("-i")  # an input option: read in real time
    assert value_of(argv, "-c:a") == "aac"
    assert value_of(argv, "-f") == "flv"
    assert argv[-1] == url
    assert "-an" not in argv
    assert "0:a:0?" in argv  # audio when the source has it, no failure when it has none
    assert value_of(argv, "-tune") == "zerolatency"  # the original's live x264 setting


def test_files_get_no_low_latency_tuning(tmp_path: Path) -> None:
    assert "-tune" not in build(context(tmp_path)).argv
    assert encoder_options("h264_nvenc", None, 4, live=True) == ["-preset", "fast", "-rc", "vbr", "-zerolatency", "1"]


def test_rtmps_is_streaming_too(tmp_path: Path) -> None:
    argv = build(context(tmp_path, output="RTMPS://live.example.com/app/key")).argv
    assert "-re" in argv
    assert argv[-1] == "RTMPS://live.example.com/app/key"


def test_looped_input_comes_before_the_input(tmp_path: Path) -> None:
    argv = build(context(tmp_path, loop=True)).argv
    assert value_of(argv, "-stream_loop") == "-1"
    assert argv.index("-stream_loop") < argv.index("-i")


def test_vaapi_uploads_frames_and_names_the_device(tmp_path: Path) -> None:
    argv = build(context(tmp_path, encoder="h264_vaapi")).argv
    assert value_of(argv, "-vaapi_device") == "/dev/dri/renderD128"
    assert value_of(argv, "-vf") == "scale=640:360,format=nv12,hwupload"
    assert "-s" not in argv
    assert "-pix_fmt" not in argv


@pytest.mark.parametrize(("cpus", "preset"), [(1, "ultrafast"), (3, "ultrafast"), (4, "veryfast"), (7, "veryfast"),
                                               (8, "fast"), (64, "fast")])
def test_software_preset_by_cpu_count(cpus: int, preset: str) -> None:
    assert software_preset(cpus) == preset


@pytest.mark.parametrize(("cpus", "preset"), [(2, "ultrafast"), (4, "veryfast"), (16, "fast")])
def test_x264_preset_follows_the_cpu_count(tmp_path: Path, cpus: int, preset: str) -> None:
    assert value_of(build(context(tmp_path, cpu_count=cpus)).argv, "-preset") == preset


def test_an_explicit_preset_wins(tmp_path: Path) -> None:
    assert value_of(build(context(tmp_path, preset="slow", cpu_count=16)).argv, "-preset") == "slow"


def test_encoder_options_by_family() -> None:
    assert encoder_options("h264_nvenc", None, 4) == ["-preset", "fast", "-rc", "vbr"]
    assert encoder_options("hevc_qsv", None, 4) == ["-preset", "veryfast"]
    assert encoder_options("libvpx-vp9", "ignored", 4)[:2] == ["-deadline", "realtime"]
    assert encoder_options("libaom-av1", None, 4)[:2] == ["-cpu-used", "8"]
    assert encoder_options("h264_vaapi", None, 4) == []
    assert encoder_options("h264_vaapi", "p4", 4) == ["-preset", "p4"]


def test_shell_metacharacters_in_the_output_stay_one_argument(tmp_path: Path) -> None:
    nasty = str(tmp_path / "outputs" / "a b; rm -rf ~ $(touch x) `id` | cat > y & 'q\".mp4")
    argv = build(context(tmp_path, output=nasty)).argv
    assert argv[-1] == "file:" + nasty
    assert sum(nasty in arg for arg in argv) == 1


def test_shell_metacharacters_in_the_input_stay_one_argument(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.input_path = str(tmp_path / "in $(reboot); x.mp4")
    argv = build(ctx).argv
    assert value_of(argv, "-i") == "file:" + ctx.input_path


def test_containers_by_codec() -> None:
    assert CONTAINER_FOR_CODEC == {"h264": ".mp4", "h265": ".mp4", "vp9": ".webm", "av1": ".mp4"}
