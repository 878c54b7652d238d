"""A file written front to back, hashed as it grows, with its unwritten (dirty) bytes kept few.

Both ends of a transfer write one: the master's partial upload under `incoming/`, a reader's `DEST.part`.
Left to the kernel, a 1 GiB transfer piles up to a gigabyte of dirty pages, and on ext4 the fsync that
makes it an object then holds up every other fsync on that disk, such as the master's SQLite commit of a
submit, while the gigabyte is written. So, as PostgreSQL does with its `*_flush_after` settings, each
`FLUSH_EVERY` bytes are handed to the disk once complete (sync_file_range(2): writeback starts, and no
journal commit is forced, which an fdatasync each time would do, and that made the commits' wait worse),
and the window before them is waited for: at most two windows are unwritten. A write error is raised by
the append that meets it. Where the C library has no sync_file_range (not Linux), or the file system
cannot do it, the kernel is left to its own writeback.

Measured with `scripts/bench/write_behind.py` (a WAL-like commit every 10 ms beside a 1 GiB write): the
slowest commit 157–330 ms without, 8–12.6 ms with it, and the write itself no slower. Through a whole
upload (scripts/bench/transfer.py, 2 cores, a disk that writes ~1 GB/s) the submits beside it wait for the
CPU the transfer takes, not for the disk, and measure the same with and without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ffrtmp.libc import linux_function

HASH_BLOCK = 1 << 20
"""Bytes read at a time to hash what a partial already holds."""

FLUSH_EVERY = 8 << 20
"""Bytes of a window handed to the disk at once (at ~1 GB/s, an 8 ms write)."""

WAIT_BEFORE, WRITE, WAIT_AFTER = 1, 2, 4
"""sync_file_range(2)'s flags."""

NOT_SUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP})
"""What sync_file_range says where it cannot be used (a pipe, a file system without it): no error of the data."""


sync_file_range: Callable[[int, int, int, int], int] | None = linux_function(
    "sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])


class HashedPartial:
    """An open partial file: its length so far (`offset`), the SHA-256 of those bytes, appends in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.offset = 0
        self._hash = hashlib.sha256()
        self._flushed = 0  # where the bytes not yet handed to the disk start
        self._write_behind = sync_file_range is not None
        try:
            self.length = os.fstat(self.fd).st_size
        except OSError:
            self.close()
            raise

    def rehash(self) -> None:
        """Hash the bytes the file held when opened: the partial is resumed from its end."""
        try:
            while self.offset < self.length:
                block = os.pread(self.fd, min(HASH_BLOCK, self.length - self.offset), self.offset)
                if not block:
                    break
                self._hash.update(block)
                self.offset += len(block)
        except OSError:
            self.close()
            raise
        self._flushed = self.offset

    def restart(self) -> None:
        """Throw away what the file held (not this transfer's bytes): start from 0."""
        os.ftruncate(self.fd, 0)
        self.length = self.offset = self._flushed = 0
        self._hash = hashlib.sha256()

    def append(self, data: bytes | memoryview) -> None:
        written = os.pwrite(self.fd, data, self.offset)
        if written != len(data):
            raise OSError(f"short write to {self.path}")
        self._hash.update(data)
        self.offset += written
        if self._write_behind and self.offset - self._flushed >= FLUSH_EVERY:
            self._hand_over()

    def _hand_over(self) -> None:
        """Start writing the new window; wait for the one before."""
        start, length = self._flushed, self.offset - self._flushed
        if start > 0:
            before = max(0, start - FLUSH_EVERY)
            self._sync_range(before, start - before, WAIT_BEFORE | WRITE | WAIT_AFTER)
        self._sync_range(start, length, WRITE)
        self._flushed = self.offset

    def _sync_range(self, offset: int, length: int, flags: int) -> None:
        """A write error is raised here, not left for `sync`: a call that waits takes the error for itself, so
        the final fsync would pass and bytes the disk does not hold would become an object."""
        assert sync_file_range is not None
        if sync_file_range(self.fd, offset, length, flags) == 0:
            return
        code = ctypes.get_errno()
        if code in NOT_SUPPORTED:  # this file system cannot: its own writeback it is, for this file
            self._write_behind = False
            return
        raise OSError(code, f"{os.strerror(code)}: writing {self.path}")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
