"""Whether the master's store can take writes now: a full or failing disk puts the master in a degraded mode.

A write that fails with SQLITE_FULL, SQLITE_IOERR or SQLITE_READONLY does not stop the master. Its batch
is rolled back, the requests in it get `StoreUnavailable` (507, exit 5), and until the disk recovers the
master refuses writes but keeps its cluster in memory (nodes stay alive, reads are served). It looks again
with a growing backoff, and also whenever the free space falls below a reserve (checked once a second), so
a disk that fills slowly is noticed before SQLite fails mid-commit.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.errors import StoreUnavailable
from ffrtmp.master.store.api import STORE_ERRORS, WriteFault

__all__ = ["WriteFault", "StoreHealth", "describe", "free_bytes", "is_write_fault"]

log = logging.getLogger("ffrtmp.master")

WRITE_FAULTS = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}
"""Primary SQLite result codes that mean the disk, not the request, is at fault."""
SPACE_CHECK_EVERY = 1.0
"""Seconds between two looks at the free space (one statvfs)."""
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
"""How long the master waits before it tries writing again, doubling after each failed try."""
MIB = 1024 * 1024


def is_write_fault(exc: BaseException) -> bool:
    """True for an SQLite error caused by the disk (full, I/O error, read-only), not by the statement."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and isinstance(code, int) and (code & 0xFF) in WRITE_FAULTS


def free_bytes(directory: str | Path | None) -> int | None:
    if directory is None:
        return None  # an in-memory store
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def describe(directory: str | Path | None, exc: BaseException | None, min_free: int) -> str:
    """One line for users: what is wrong with the store's disk (or its database server) and what to do."""
    if exc is not None and not isinstance(exc, sqlite3.Error):
        # A database server's fault (its message names the server): no local disk is involved.
        said = str(exc).removeprefix("store unavailable: ")  # StoreUnavailable says it already
        return f"store unavailable: {said}; check that the database server runs and can be reached"
    free = free_bytes(directory)
    space = "unknown" if free is None else f"{free / MIB:.1f} MiB"
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    if (code & 0xFF) == sqlite3.SQLITE_READONLY:
        return f"store read-only: {directory} cannot be written ({exc}); make it writable"
    if exc is None or (code & 0xFF) == sqlite3.SQLITE_FULL or (free is not None and free < min_free):
        reserve = f" (the master keeps {min_free / MIB:.0f} MiB in reserve)" if min_free >= MIB else ""
        return f"store full: {directory} has {space} free{reserve}; free some space there"
    return f"store I/O error on {directory} ({exc}; {space} free): check the disk"


@dataclass
class StoreHealth:
    """The degraded-mode state machine, driven by the caller's monotonic clock (`now`): tests pin it, and a
    wall-clock step never moves a retry."""

    directory: str | None
    """The store's directory; None for an in-memory store (no disk to watch)."""
    min_free: int
    fault: str | None = None
    """Why writes are refused now; None while the store is writable."""
    since: float = 0.0
    retry_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    checked_at: float = float("-inf")
    probing: bool = False
    """Writes were let through again after a fault, and none has gone through yet."""
    before_retry: Callable[[], None] | None = None
    """A read the failed batch still owes (its resync, when the store could not be read either): run before
    writes are let through again; should it fail too, the store is still down."""

    @property
    def degraded(self) -> bool:
        return self.fault is not None

    def failed(self, exc: BaseException | None, now: float) -> None:
        """A write failed (or the reserve ran out): refuse writes, and try again after the backoff."""
        reason = describe(self.directory, exc, self.min_free)
        if self.fault is None and not self.probing:
            self.since = now
            log.error("%s; writes are refused until it recovers (the cluster is kept in memory; cause: %s)",
                      reason, exc or "free space below the reserve")
        else:
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.fault, self.probing = reason, False
        self.retry_at = now + self.backoff

    def writable(self, now: float) -> bool:
        """Whether to write now: False while degraded and before the next try, or when the reserve is gone.

        Degraded, the next try comes once the backoff has passed and the reserve is back; should that
        write fail again, `failed` doubles the backoff.
        """
        if now - self.checked_at >= SPACE_CHECK_EVERY or (self.fault is not None and now >= self.retry_at):
            self.checked_at = now
            free = free_bytes(self.directory)
            low = free is not None and free < self.min_free
            if self.fault is None:
                if low:
                    self.failed(None, now)
            elif now >= self.retry_at and not low and self._settled(now):
                self.fault, self.probing = None, True
            elif now >= self.retry_at:
                self.failed(None, now)
        return self.fault is None

    def _settled(self, now: float) -> bool:
        if self.before_retry is None:
            return True
        try:
            self.before_retry()
        except STORE_ERRORS as exc:
            self.failed(exc, now)
            return False
        self.before_retry = None
        return True

    def recovered(self) -> None:
        """A write went through: the next fault starts again from the first backoff."""
        if self.probing:
            log.warning("store writable again after %.0fs", self.checked_at - self.since)
            self.probing = False
            self.backoff = FIRST_BACKOFF

    def refusal(self, now: float) -> StoreUnavailable:
        return StoreUnavailable(f"{self.fault or 'store unavailable'}; nothing was stored, retry after "
                                f"{max(self.retry_at - now, 0.1):.1f}s")
