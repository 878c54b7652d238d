"""Whether a given input has audio, asked of a real ffprobe on real files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ffrtmp.worker.inputs import audio_track


def make_input(ffmpeg: str, path: Path, *, audio: bool, seconds: float = 2) -> Path:
    """A 160x120 H.264 file, with a 440 Hz AAC track when `audio`."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10"]
    if audio:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-c:a", "aac", "-shortest"]
    subprocess.run([*argv, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True,
                   timeout=60)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return {"av": make_input(ffmpeg, root / "with audio.mp4", audio=True),
            "v": make_input(ffmpeg, root / "video only.mp4", audio=False)}


def test_a_file_with_an_audio_track(inputs: dict[str, Path], ffprobe: str) -> None:
    assert audio_track(ffprobe, str(inputs["av"])) == (True, None)


def test_a_file_without_one(inputs: dict[str, Path], ffprobe: str) -> None:
    assert audio_track(ffprobe, str(inputs["v"])) == (False, None)


def test_what_cannot_be_probed_counts_as_no_audio_and_says_why(tmp_path: Path, ffprobe: str) -> None:
    found, why = audio_track(ffprobe, str(tmp_path / "missing.mp4"))
    assert not found and why is not None and why.startswith("ffprobe failed:") and "missing.mp4" in why
    assert audio_track(None, "x.mp4") == (False, "ffprobe is not installed")
