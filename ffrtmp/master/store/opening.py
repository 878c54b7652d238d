"""Start-up checks of the data dir and the database: every way they can be wrong is one clear line, exit 2.

Checked before the master serves anything, so a store it cannot use never starts and looks healthy:
a data dir that is a file or cannot be written, a database that is garbage, damaged, another
application's, read-only, a directory, or on a full disk. The store is made private (0600) here too,
after the checks, so another application's file is never touched.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import cast

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.health import describe, free_bytes, is_write_fault
from ffrtmp.master.store.postgres_url import open_url_store, postgres_url_of
from ffrtmp.master.store.sqlite import Store
from ffrtmp.security import private_database

MOVE_AWAY = "move it away to start an empty store, or point --db at the right file"


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "is on a read-only file system: remount it read-write or pick another --data-dir"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"is not writable by this user (uid {os.getuid()}): fix its permissions or run as its owner"
    if exc.errno == errno.ENOSPC:
        return "is on a full disk: free some space there"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "is not a directory (a file is in the way): point --data-dir at a directory"
    return f"cannot be used ({exc.strerror or exc}): check it or pick another --data-dir"


def prepare_data_dir(path: Path, min_free: int = defaults.STORE_MIN_FREE) -> None:
    """Create the data dir if needed and make sure this process can write in it (with `min_free` bytes free)."""
    if path.exists() and not path.is_dir():
        raise InvalidInput("data-dir", f"{path} is a file, not a directory: point --data-dir at a directory")
    free = free_bytes(path) if path.is_dir() else None
    if free is not None and free < min_free:
        raise InvalidInput("data-dir", f"{describe(path, None, min_free)}, then start the master again")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidInput("data-dir", f"{path} {_os_problem(exc)}") from None


def _describe_sqlite(path: Path, exc: sqlite3.Error, min_free: int) -> str:
    text = str(exc)
    if "file is not a database" in text:
        return f"{path} is not an SQLite database (garbage, encrypted or another format): {MOVE_AWAY}"
    if "malformed" in text:
        return (f"{path} is damaged ({text}): restore it from a backup, or {MOVE_AWAY} "
                "(`sqlite3 FILE .recover` may save its rows)")
    if "readonly" in text or "read-only" in text:
        return f"{path} cannot be written ({text}): make the file and its directory writable by this user"
    if is_write_fault(exc):
        return f"{describe(path.parent, exc, min_free)}, then start the master again"
    if "unable to open" in text:
        if not os.access(path.parent, os.W_OK):
            return f"{path} cannot be opened: its directory is not writable by this user"
        return f"{path} cannot be opened ({text}): check that it is a file this user may read and write"
    return f"{path}: {text}: check the file, or {MOVE_AWAY}"


def open_store(path: Path, min_free: int = defaults.STORE_MIN_FREE) -> Store:
    """The master's store at `path`, migrated and checked writable, or InvalidInput naming what is wrong."""
    if postgres_url_of(path) is not None:  # --db postgresql://...: the master migrates its database
        return cast(Store, open_url_store(path, migrate=True))  # same methods (the Store protocol will say so)
    if path.is_dir():
        raise InvalidInput("db", f"{path} is a directory, not a database file: {MOVE_AWAY}")
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        file = path.with_name(name)
        if file.exists() and os.statvfs(file).f_flag & os.ST_RDONLY:
            raise InvalidInput("db", f"{file} is on a read-only file system: remount it read-write or move the "
                               "store")
        if file.exists() and not os.access(file, os.W_OK):
            raise InvalidInput("db", f"{file} is read-only for this user (uid {os.getuid()}): make it writable "
                               "(chmod u+w) or run the master as its owner")
    free = free_bytes(path.parent)
    if free is not None and free < min_free:
        raise InvalidInput("db", f"{describe(path.parent, None, min_free)}, then start the master again")
    store: Store | None = None
    try:
        if not path.exists():
            private_database(path)  # a new store is 0600 from its first byte (its WAL and SHM follow its mode)
        store = Store(path)
        store.check_writable()
        private_database(path)  # an existing store of ours (another application's was refused above)
    except sqlite3.Error as exc:
        if store is not None:
            store.close()
        raise InvalidInput("db", _describe_sqlite(path, exc, min_free)) from None
    except OSError as exc:
        if store is not None:
            store.close()
        raise InvalidInput("db", f"{path} {_os_problem(exc)}") from None
    return store
