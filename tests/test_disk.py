"""The free-space check before an attempt, and the partial files a dead worker leaves behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from ffrtmp.failures import Failure
from ffrtmp.worker import disk
from ffrtmp.worker.inputs import remove_stale_partials
from tests.test_runner import Harness, make_attempt

Usage = namedtuple("Usage", "total used free")
MiB = 2**20


def fake_usage(monkeypatch: pytest.MonkeyPatch, total: int, free: int) -> list[Path]:
    asked: list[Path] = []

    def usage(path: Path) -> Usage:
        asked.append(Path(path))
        return Usage(total, total - free, free)

    monkeypatch.setattr(disk.shutil, "disk_usage", usage)
    return asked


def test_room_enough(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_usage(monkeypatch, total=100_000 * MiB, free=10_000 * MiB)
    assert disk.space_problem(tmp_path) is None


def test_too_full_in_percent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_usage(monkeypatch, total=100_000 * MiB, free=4_000 * MiB)  # 96% used, 3.9 GiB free
    problem = disk.space_problem(tmp_path)
    assert problem is not None
    assert str(tmp_path) in problem and "96.0% full" in problem and "4000 MiB free" in problem


def test_too_little_free_on_a_small_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_usage(monkeypatch, total=1_000 * MiB, free=150 * MiB)  # only 85% used, but under 200 MiB
    problem = disk.space_problem(tmp_path)
    assert problem is not None and "150 MiB free" in problem


def test_a_work_dir_not_made_yet_is_checked_on_its_parent(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    asked = fake_usage(monkeypatch, total=100_000 * MiB, free=50_000 * MiB)
    assert disk.space_problem(tmp_path / "not" / "yet") is None
    assert asked == [tmp_path]


def test_the_real_disk_here(tmp_path: Path) -> None:
    usage = shutil.disk_usage(tmp_path)
    full = 100 * usage.used / usage.total > disk.MAX_USED_PERCENT or usage.free < disk.MIN_FREE_BYTES
    assert (disk.space_problem(tmp_path) is not None) == full


def test_an_attempt_on_a_full_disk_fails_before_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_usage(monkeypatch, total=100_000 * MiB, free=100 * MiB)
    recorder = Harness(tmp_path / "work", None, {}).run(make_attempt())
    result = recorder.finished()
    assert (result["status"], result["failure"]) == ("failed", Failure.ENCODER_ERROR.value)
    assert str(tmp_path / "work") in result["error"] and "full" in result["error"]
    assert "started" not in recorder.kinds()


def test_null_jobs_need_no_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_usage(monkeypatch, total=100_000 * MiB, free=0)
    recorder = Harness(tmp_path / "work", None, {}).run(make_attempt(engine="null"))
    assert recorder.finished()["status"] == "completed"


# ---- partial files ---------------------------------------------------------------------------------


def test_partials_of_dead_writers_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dead = tmp_path / f".testsrc2_160x120_10fps_1.5s.{gone}.140.mp4"
    alive = tmp_path / f".testsrc2_160x120_10fps_1s.{os.getpid()}.140.mp4"
    finished = tmp_path / "testsrc2_160x120_10fps_1s.mp4"
    odd = tmp_path / ".notes.mp4"
    for path in (dead, alive, finished, odd):
        path.write_bytes(b"x")
    assert remove_stale_partials(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, finished, odd))
