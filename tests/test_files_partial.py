"""The partial file both ends of a transfer write: hashed as it grows, resumed, and written behind."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys
from pathlib import Path

import pytest

from ffrtmp.files import partial
from ffrtmp.files.partial import WAIT_AFTER, WAIT_BEFORE, WRITE, HashedPartial


def test_appends_are_hashed_and_a_reopened_partial_resumes_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "x.part"
    first = HashedPartial(path)
    first.rehash()
    first.append(b"a" * 1000)
    first.close()

    again = HashedPartial(path)
    again.rehash()
    assert again.offset == 1000
    again.append(memoryview(b"b" * 500))
    again.sync()
    again.close()
    assert path.read_bytes() == b"a" * 1000 + b"b" * 500
    assert again.hexdigest() == hashlib.sha256(b"a" * 1000 + b"b" * 500).hexdigest()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_restart_throws_the_old_bytes_away(tmp_path: Path) -> None:
    path = tmp_path / "x.part"
    path.write_bytes(b"not these bytes")
    file = HashedPartial(path)
    assert file.length == 15
    file.restart()
    file.append(b"new")
    file.close()
    assert path.read_bytes() == b"new"
    assert file.hexdigest() == hashlib.sha256(b"new").hexdigest()


def test_each_full_window_is_handed_to_the_disk_and_the_one_before_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int]] = []
    real = partial.sync_file_range

    def recorded(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((offset, length, flags))
        return real(fd, offset, length, flags) if real is not None else 0

    window = 64 << 10
    monkeypatch.setattr(partial, "FLUSH_EVERY", window)
    monkeypatch.setattr(partial, "sync_file_range", recorded)
    file = HashedPartial(tmp_path / "x.part")
    file.rehash()
    chunk = os.urandom(16 << 10)
    for _ in range(3 * window // len(chunk) + 1):  # three whole windows and a piece of the fourth
        file.append(chunk)
    file.sync()
    file.close()
    everything = WAIT_BEFORE | WRITE | WAIT_AFTER
    assert calls == [(0, window, WRITE),
                     (0, window, everything), (window, window, WRITE),
                     (window, window, everything), (2 * window, window, WRITE)]


def test_without_sync_file_range_the_partial_is_written_all_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partial, "FLUSH_EVERY", 1024)
    monkeypatch.setattr(partial, "sync_file_range", None)
    file = HashedPartial(tmp_path / "x.part")
    for _ in range(10):
        file.append(b"z" * 512)
    file.sync()
    file.close()
    assert (tmp_path / "x.part").read_bytes() == b"z" * 5120


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range(2) is Linux's")
def test_linux_has_a_working_sync_file_range(tmp_path: Path) -> None:
    assert partial.sync_file_range is not None
    path = tmp_path / "x"
    path.write_bytes(b"q" * 8192)
    fd = os.open(path, os.O_RDWR)
    try:
        assert partial.sync_file_range(fd, 0, 8192, WAIT_BEFORE | WRITE | WAIT_AFTER) == 0
    finally:
        os.close(fd)


def test_a_write_error_met_while_writing_behind_is_raised_not_left_to_a_final_fsync_that_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync_file_range that waits takes a write error for itself (ENOSPC, EIO), and the fsync after it
    passes: had the error been ignored, bytes the disk does not hold would have become an object."""
    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & WAIT_AFTER:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return 0

    monkeypatch.setattr(partial, "FLUSH_EVERY", 1024)
    monkeypatch.setattr(partial, "sync_file_range", failing)
    file = HashedPartial(tmp_path / "x.part")
    file.append(b"a" * 1024)  # the first window is only started
    with pytest.raises(OSError) as failed:
        file.append(b"b" * 1024)  # waiting for the first one meets the error
    assert failed.value.errno == errno.ENOSPC and "x.part" in str(failed.value)
    file.close()


def test_a_file_system_without_sync_file_range_is_left_to_its_own_writeback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def unsupported(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append(flags)
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(partial, "FLUSH_EVERY", 1024)
    monkeypatch.setattr(partial, "sync_file_range", unsupported)
    file = HashedPartial(tmp_path / "x.part")
    for _ in range(8):
        file.append(b"c" * 1024)
    file.sync()
    file.close()
    assert calls == [WRITE] and (tmp_path / "x.part").stat().st_size == 8192


def test_a_resumed_partial_writes_behind_from_where_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int]] = []

    def recorded(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((offset, length, flags))
        return 0

    monkeypatch.setattr(partial, "FLUSH_EVERY", 1024)
    monkeypatch.setattr(partial, "sync_file_range", recorded)
    (tmp_path / "x.part").write_bytes(b"d" * 5000)
    file = HashedPartial(tmp_path / "x.part")
    file.rehash()
    file.append(b"e" * 1024)
    file.append(b"e" * 1024)
    file.close()
    everything = WAIT_BEFORE | WRITE | WAIT_AFTER
    assert calls == [(3976, 1024, everything), (5000, 1024, WRITE), (5000, 1024, everything), (6024, 1024, WRITE)]
    assert file.hexdigest() == hashlib.sha256(b"d" * 5000 + b"e" * 2048).hexdigest()
