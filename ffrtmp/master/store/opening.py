"""Opening the master's store (`open_store`: a path or a PostgreSQL URL), and the start-up checks of the data
dir and the SQLite file: every way they can be wrong is one clear line, exit 2.

Checked before the master serves anything, so a store it cannot use never starts and looks healthy:
a data dir that is a file or cannot be written, a database that is garbage, damaged, another
application's, read-only, a directory, or on a full disk. The store is made private (0600) here too,
after the checks, so another application's file is never touched.
"""

from __future__ import annotations

import errno
import importlib
import os
import sqlite3
from pathlib import Path
from typing import cast

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.api import Store
from ffrtmp.master.store.health import describe, free_bytes, is_write_fault
from ffrtmp.master.store.sqlite import SqliteStore
from ffrtmp.security import private_database

MOVE_AWAY = "move it away to start an empty store, or point --db at the right file"
URL_SCHEMES = ("postgresql://", "postgres://")
"""A `--db` that starts so names a PostgreSQL database; anything else is the path of an SQLite file."""
POSTGRES_MODULE = "ffrtmp.master.store.postgres"


def is_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(URL_SCHEMES)


def open_store(db: str | Path, min_free: int = defaults.STORE_MIN_FREE, *, migrate: bool = True) -> Store:
    """The master's store: a `postgresql://` (or `postgres://`) URL opens the PostgreSQL backend, anything
    else is an SQLite file (checked as `open_sqlite_store` says). `migrate=False` (tools beside a running
    master): a store that needs migrating is refused. Bad input or a store that cannot be used: InvalidInput."""
    if is_url(db):
        return _open_postgres(str(db), migrate)
    return open_sqlite_store(Path(db), min_free, migrate=migrate)


def _open_postgres(url: str, migrate: bool) -> Store:
    scheme = url.split("://", 1)[0]
    try:
        module = importlib.import_module(POSTGRES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (POSTGRES_MODULE, "psycopg") and not (exc.name or "").startswith("psycopg"):
            raise
        raise InvalidInput("db", f"{scheme}://… needs the PostgreSQL backend: pip install 'ffrtmp[postgres]'"
                           ) from None
    opener = module.open_postgres_store
    return cast(Store, opener(url) if migrate else opener(url, migrate=False))


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


def open_sqlite_store(path: Path, min_free: int = defaults.STORE_MIN_FREE, *, migrate: bool = True) -> SqliteStore:
    """The SQLite store at `path`, migrated and checked writable, or InvalidInput naming what is wrong."""
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
    store: SqliteStore | None = None
    try:
        if not path.exists():
            private_database(path)  # a new store is 0600 from its first byte (its WAL and SHM follow its mode)
        store = SqliteStore(path, migrate=migrate)
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
