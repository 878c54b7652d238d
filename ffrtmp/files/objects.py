"""The content-addressed object store: verified files by SHA-256, and uploads in progress beside them.

`ObjectStore` is what the master's data channel needs from a store, so a bucket (S3-compatible) can stand in
for the local directory. `LocalObjects` keeps `objects/ab/<sha256>` for verified files and `incoming/<key>` for
partial uploads; a partial becomes an object only after its size and SHA-256 matched, by an fsync and an
atomic rename, so a half-sent or corrupt file is never visible (docs/files.md, "The store").
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Protocol

from ffrtmp.files.partial import HashedPartial

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY = re.compile(r"^[0-9A-Za-z._-]{1,200}$")


class ObjectMismatch(Exception):
    """The bytes received are not the object announced (size or SHA-256): the upload was discarded."""


def valid_sha256(text: object) -> bool:
    return isinstance(text, str) and bool(_SHA256.match(text))


class ObjectReader(Protocol):
    """An open stored object; reads at any offset (a download resumes from the reader's own length)."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class IncomingObject(Protocol):
    """An upload in progress."""

    @property
    def offset(self) -> int:
        """How many bytes it holds (received before, for a resume)."""
        ...

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Append `data`, which must start at `offset` (== self.offset), else ValueError."""
        ...

    def commit(self) -> None:
        """Make the object visible once all `size` bytes came and their SHA-256 matched; else ObjectMismatch
        (the partial is discarded)."""
        ...

    def close(self) -> None:
        """Stop, keeping the bytes so far for a resume."""
        ...

    def abort(self) -> None:
        """Stop and discard the bytes so far."""
        ...


class ObjectStore(Protocol):
    """Where verified objects live. Objects are immutable; the database says who holds which (store/files.py)."""

    def size_of(self, sha256: str) -> int | None:
        """The size of a stored object, None when there is none."""
        ...

    def receive(self, key: str, sha256: str, size: int) -> IncomingObject:
        """Start or resume an upload of (sha256, size) under `key` (one partial per key: same key, same bytes)."""
        ...

    def received(self, key: str) -> int | None:
        """How many bytes the partial upload under `key` holds; None when there is none (opens nothing)."""
        ...

    def open(self, sha256: str) -> ObjectReader:
        """Open a stored object for reading; FileNotFoundError when there is none."""
        ...

    def remove(self, sha256: str) -> bool:
        """Delete a stored object; False when there was none."""
        ...

    def used_bytes(self) -> int:
        """Bytes held: stored objects and partial uploads."""
        ...

    def drop_incoming(self, older_than: float) -> int:
        """Delete partial uploads untouched for `older_than` seconds; how many."""
        ...


class _LocalReader:
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class _LocalIncoming:
    """A partial under incoming/: hashed as it grows (a resume re-hashes what was there first)."""

    def __init__(self, owner: LocalObjects, path: Path, sha256: str, size: int) -> None:
        self._owner, self._path, self.sha256, self.size = owner, path, sha256, size
        self._file = HashedPartial(path)
        if self._file.length > size:  # not this object's bytes: start over
            try:
                length = self._file.length
                self._file.restart()
            except OSError:
                self._file.close()
                raise
            owner._grew(-length)
        self._file.rehash()

    @property
    def offset(self) -> int:
        return self._file.offset

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset != self.offset:
            raise ValueError(f"a chunk at offset {offset}, expected {self.offset}")
        if self.offset + len(data) > self.size:
            raise ObjectMismatch(f"more than the {self.size} bytes announced")
        self._file.append(data)
        self._owner._grew(len(data))

    def commit(self) -> None:
        try:
            if self.offset != self.size:
                raise ObjectMismatch(f"{self.offset} bytes came, {self.size} were announced")
            if self._file.hexdigest() != self.sha256:
                raise ObjectMismatch(f"the bytes' SHA-256 is {self._file.hexdigest()}, not {self.sha256}")
            self._file.sync()
        except BaseException:
            self.abort()
            raise
        self._file.close()
        self._owner._publish(self._path, self.sha256, self.size)

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
            self._owner._grew(-self.offset)


class LocalObjects:
    """The object store in a local (or shared) directory. Thread-safe; sizes are kept in memory after a scan."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.incoming = root / "incoming"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._used = sum(p.stat().st_size for d in (self.objects, self.incoming) for p in d.rglob("*")
                         if p.is_file())

    def path_of(self, sha256: str) -> Path:
        if not valid_sha256(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.objects / sha256[:2] / sha256

    def size_of(self, sha256: str) -> int | None:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def receive(self, key: str, sha256: str, size: int) -> _LocalIncoming:
        if not _KEY.match(key):
            raise ValueError(f"not an upload key: {key!r}")
        self.path_of(sha256)  # validates
        if size < 0:
            raise ValueError("a negative size")
        return _LocalIncoming(self, self.incoming / key, sha256, size)

    def received(self, key: str) -> int | None:
        if not _KEY.match(key):
            raise ValueError(f"not an upload key: {key!r}")
        try:
            return (self.incoming / key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256: str) -> _LocalReader:
        return _LocalReader(self.path_of(sha256))

    def remove(self, sha256: str) -> bool:
        path = self.path_of(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return False
        self._grew(-size)
        return True

    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    def drop_incoming(self, older_than: float) -> int:
        cutoff, dropped = time.time() - older_than, 0
        for path in self.incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                if stat.st_mtime < cutoff:
                    path.unlink()
                    self._grew(-stat.st_size)
                    dropped += 1
        return dropped

    def _grew(self, delta: int) -> None:
        with self._lock:
            self._used = max(0, self._used + delta)

    def _publish(self, partial: Path, sha256: str, size: int) -> None:
        target = self.path_of(sha256)
        target.parent.mkdir(exist_ok=True)
        if target.exists():  # the same bytes stored already (another tenant's): keep one copy
            partial.unlink()
            self._grew(-size)
            return
        os.replace(partial, target)
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
