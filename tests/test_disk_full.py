"""F11: a disk that fills mid-encode fails the attempt with the cause first, not x264's statistics.

A real FFmpeg writes into a 200 KiB tmpfs (an output root) until it is full. Needs root for `mount`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.failures import Failure
from ffrtmp.worker import encoders as encoder_probe
from ffrtmp.worker.runner import WorkerPaths
from tests.test_runner import Harness, make_attempt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder_map(ffmpeg: str) -> dict[str, dict[str, Any]]:
    return {e.name: e.to_dict() for e in encoder_probe.detect(ffmpeg)}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def test_a_full_disk_is_named_first_in_the_error(tmp_path: Path, small_disk: Path, ffmpeg: str,
                                                 encoder_map: dict[str, dict[str, Any]]) -> None:
    harness = Harness(tmp_path / "work", ffmpeg, encoder_map)
    harness.paths = WorkerPaths(tmp_path / "work", output_roots=(small_disk,))
    attempt = make_attempt("job-full", params={"output": str(small_disk / "big.mp4")}, resolution="320x240",
                           fps=30, duration=10, bitrate="50000k")
    result = harness.run(attempt).finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value), result
    assert result["error"].startswith(f"ffmpeg exited with 1: No space left on device: {small_disk} has "), \
        result["error"]
    assert list(small_disk.iterdir()) == [], "the attempt's partial file is removed"
