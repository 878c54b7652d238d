"""M4 (worker part): output retention, with a pinned clock (file times set, `now` given)."""

from __future__ import annotations

import os
from pathlib import Path

from ffrtmp.worker.outputs import plan, resolve_output
from ffrtmp.worker.retention import STRAY_PARTIAL_AGE, RetentionSweeper, sweep

NOW = 1_700_000_000.0
"""Before the real clock: directories whose files a sweep deletes get a real (later) time."""
DAY = 86400.0


def file_at(path: Path | str, age: float, size: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age, NOW - age))
    return path


def age_dirs(root: Path, age: float) -> None:
    for folder, _, _ in os.walk(root):
        os.utime(folder, (NOW - age, NOW - age))


def test_published_outputs_older_than_the_retention_go_with_their_directories(tmp_path: Path) -> None:
    work = tmp_path / "work"
    old = file_at(resolve_output(work, (), "acme", "old-job", None, ".mp4"), age=8 * DAY)
    recent = file_at(resolve_output(work, (), "acme", "new-job", None, ".mp4"), age=6 * DAY)
    legacy = file_at(work / "outputs" / "0123abcd.mp4", age=30 * DAY)  # the layout before tenant directories
    age_dirs(work / "outputs", 8 * DAY)
    swept = sweep(work / "outputs", NOW, retention=7 * DAY)
    assert (swept.outputs, swept.partials, swept.bytes) == (2, 0, 200)
    assert not old.exists() and not old.parent.exists() and not legacy.exists()
    assert recent.exists()
    assert (work / "outputs").is_dir()


def test_zero_retention_keeps_outputs_for_good(tmp_path: Path) -> None:
    kept = file_at(resolve_output(tmp_path, (), "acme", "j", None, ".mp4"), age=365 * DAY)
    assert sweep(tmp_path / "outputs", NOW, retention=0).outputs == 0
    assert kept.exists()


def test_stray_partials_go_but_live_and_held_ones_stay(tmp_path: Path) -> None:
    final = resolve_output(tmp_path, (), "acme", "j", None, ".mp4")
    dead = file_at(plan(final, "j", 1).partial, age=STRAY_PARTIAL_AGE + 60)  # its worker died mid-encode
    writing = file_at(plan(final, "j", 2).partial, age=5)  # being written right now
    held = file_at(plan(final, "j", 3).partial, age=STRAY_PARTIAL_AGE + 60)  # waits for the master's answer
    swept = sweep(tmp_path / "outputs", NOW, retention=7 * DAY, keep={str(held)})
    assert swept.partials == 1
    assert not dead.exists() and writing.exists() and held.exists()


def test_a_fresh_empty_job_directory_is_left_for_the_encode_about_to_start(tmp_path: Path) -> None:
    fresh = Path(resolve_output(tmp_path, (), "acme", "starting", None, ".mp4")).parent
    os.utime(fresh, (NOW - 10, NOW - 10))
    abandoned = tmp_path / "outputs" / "acme" / "abandoned"
    abandoned.mkdir()
    os.utime(abandoned, (NOW - STRAY_PARTIAL_AGE - 60,) * 2)
    sweep(tmp_path / "outputs", NOW, retention=7 * DAY)
    assert fresh.is_dir() and not abandoned.exists()


def test_nothing_outside_the_outputs_tree_is_touched(tmp_path: Path) -> None:
    cache = file_at(tmp_path / "inputs" / "testsrc2_160x120_10fps_1s.mp4", age=30 * DAY)
    assert sweep(tmp_path / "outputs", NOW, retention=DAY).outputs == 0  # no outputs dir yet
    assert cache.exists()


def test_the_sweeper_runs_at_start_then_every_interval(tmp_path: Path) -> None:
    old = file_at(resolve_output(tmp_path, (), "acme", "j", None, ".mp4"), age=8 * DAY)
    sweeper = RetentionSweeper(tmp_path / "outputs", 7 * DAY, set, interval=600)
    assert sweeper.due(100.0)
    assert not sweeper.due(200.0) and not sweeper.due(699.0)
    assert sweeper.due(700.0)
    sweeper.next_at = None
    sweeper.maybe_start(1000.0, NOW)
    assert sweeper.thread is not None
    sweeper.thread.join(10)
    assert sweeper.last is not None and sweeper.last.outputs == 1 and not old.exists()
