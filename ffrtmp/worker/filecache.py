"""The worker's cache of fetched inputs: `WORK_DIR/cache/<sha256>`, bounded, least recently used out first.

A file enters the cache only after its size and SHA-256 matched what the job named: it is fetched into
`<sha256>.partial` (a rerun resumes from that file's length), checked, then renamed, so a name in the cache is
always a verified file. Concurrent attempts that need the same file fetch it once: the second waits for the
first, then finds it there. A file in use by a running attempt (pinned) is never evicted; the others go oldest
first, by their last use (the file's mtime, so the order survives a restart), when a new one needs room.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.errors import FfrtmpError, FileMismatch
from ffrtmp.files.transfer import file_sha256

_ENTRY = re.compile(r"^[0-9a-f]{64}$")

Fetch = Callable[[Path], "str | None"]
"""Fills the partial file at the path given (appending to what is there: a resume); returns the SHA-256 it
checked the bytes against, if it did (saves hashing them twice), else None."""


class CacheFull(FfrtmpError):
    """The file does not fit in the cache, even with everything not in use evicted."""


@dataclass(frozen=True)
class Wanted:
    sha256: str
    size: int


class FileCache:
    def __init__(self, directory: Path, max_bytes: int, tries: int = 3) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be 0 or more")
        self.directory = directory
        self.max_bytes = max_bytes
        """0: no bound."""
        self.tries = tries
        """Fetches of one file before a size or hash mismatch fails the attempt."""
        self._guard = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._pins: dict[str, int] = {}
        self.fetched = 0
        """Files fetched (not found in the cache) since start."""

    def path_of(self, sha256: str) -> Path:
        if not _ENTRY.match(sha256):
            raise ValueError(f"{sha256!r} is not a SHA-256")
        return self.directory / sha256

    @contextlib.contextmanager
    def use(self, wanted: Wanted, fetch: Fetch) -> Iterator[Path]:
        """The verified file, fetched when missing; pinned (never evicted) until the block ends."""
        path = self.path_of(wanted.sha256)
        with self._guard:
            lock = self._fetching.setdefault(wanted.sha256, threading.Lock())
            self._pins[wanted.sha256] = self._pins.get(wanted.sha256, 0) + 1
        try:
            with lock:  # one fetch per file: a second attempt needing it waits here, then finds it
                if not self._present(path, wanted.size):
                    self._fetch(path, wanted, fetch)
                with contextlib.suppress(OSError):
                    os.utime(path)  # the last use: what the LRU order goes by
            yield path
        finally:
            with self._guard:
                self._pins[wanted.sha256] -= 1
                if not self._pins[wanted.sha256]:
                    del self._pins[wanted.sha256]

    def _present(self, path: Path, size: int) -> bool:
        """In the cache with the size named (the hash was checked when it came in)."""
        try:
            return path.stat().st_size == size
        except OSError:
            return False

    def _fetch(self, path: Path, wanted: Wanted, fetch: Fetch) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.make_room(wanted.size, keep=wanted.sha256)
        partial = path.with_name(path.name + ".partial")
        problem = ""
        for _ in range(max(1, self.tries)):
            try:
                checked = fetch(partial)
            except FileMismatch as exc:  # the transfer itself saw wrong bytes: another try, from nothing
                problem = str(exc)
                partial.unlink(missing_ok=True)
                continue
            size = partial.stat().st_size if partial.exists() else -1
            if size == wanted.size:
                digest = checked or file_sha256(partial)
                if digest == wanted.sha256:
                    os.replace(partial, path)
                    self.fetched += 1
                    return
                problem = f"its SHA-256 is {digest}, not {wanted.sha256}"
            else:
                problem = f"{size} bytes came, not {wanted.size}"
            partial.unlink(missing_ok=True)  # the next try starts from nothing: these bytes are wrong
        raise FileMismatch(f"the input {wanted.sha256[:12]}… fetched {self.tries} times was never the file the job "
                           f"names: {problem}")

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, size, sha256) of every file in the cache, least recently used first."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if _ENTRY.match(entry.name):
                    with contextlib.suppress(OSError):
                        info = entry.stat()
                        found.append((info.st_mtime, info.st_size, entry.name))
        return sorted(found)

    def make_room(self, size: int, keep: str = "") -> None:
        """Evict unpinned files, least recently used first, until `size` more bytes fit; CacheFull if they can't."""
        if not self.max_bytes:
            return
        entries = [entry for entry in self.entries() if entry[2] != keep]
        total = sum(entry[1] for entry in entries)
        with self._guard:
            pinned = set(self._pins) - {keep}
        for _, length, sha256 in entries:
            if total + size <= self.max_bytes:
                return
            if sha256 in pinned:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.directory / sha256).unlink()
            total -= length
        if total + size > self.max_bytes:
            raise CacheFull(f"an input of {size} bytes does not fit in the worker's cache (--cache-max-bytes "
                            f"{self.max_bytes}, {total} bytes held by running jobs)")
