"""Whether a given input has audio (`ffmpeg -i` on real files: the bundled FFmpeg has no ffprobe), and whether
GStreamer can carry it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ffrtmp.worker.gst_encoders import audio_problem, element_installed
from ffrtmp.worker.inputs import audio_codec


def make_input(ffmpeg: str, path: Path, *, audio: str | None, seconds: float = 2) -> Path:
    """A 160x120 H.264 file, with a 440 Hz track in the codec `audio` (e.g. aac) unless None."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10"]
    if audio:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-c:a", audio, "-shortest"]
    subprocess.run([*argv, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True,
                   timeout=60)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return {"aac": make_input(ffmpeg, root / "with audio.mp4", audio="aac"),
            "none": make_input(ffmpeg, root / "video only.mp4", audio=None)}


def test_a_file_with_an_audio_track(inputs: dict[str, Path], ffmpeg: str) -> None:
    assert audio_codec(ffmpeg, str(inputs["aac"])) == ("aac", None)


def test_a_file_without_one(inputs: dict[str, Path], ffmpeg: str) -> None:
    assert audio_codec(ffmpeg, str(inputs["none"])) == (None, None)


def test_what_cannot_be_probed_counts_as_no_audio_and_says_why(tmp_path: Path, ffmpeg: str) -> None:
    codec, why = audio_codec(ffmpeg, str(tmp_path / "missing.mp4"))
    assert codec is None and why is not None and why.startswith("probing the input failed:") and "missing.mp4" in why
    assert audio_codec(None, "x.mp4") == (None, "ffmpeg is not installed")


def test_gstreamer_carries_what_it_can_decode_and_says_why_not_otherwise(gst_launch: str) -> None:
    assert audio_problem(gst_launch, "aac") is None
    assert audio_problem(gst_launch, "pcm_s16le") is None  # raw: no decoder needed
    problem = audio_problem(gst_launch, "adpcm_ima_wav")
    assert problem is not None and "cannot decode its adpcm_ima_wav audio" in problem
    assert not element_installed(gst_launch, "no_such_element_at_all")
