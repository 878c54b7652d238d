"""Stored files in the master database (a mixin of `SqliteStore`; postgres_files.py runs the same SQL).

`files`: one row per (tenant, sha256), who holds which object (the bytes are in the object store, once).
`job_files`: a job's input (role `input`, attempt 0) and each attempt's stored output (role `output`), so an
output is a job's only once its attempt completed the job, and a stale attempt's upload never is.
"""

from __future__ import annotations

import sqlite3
from typing import Any, TypedDict

import sqlite_utils


class FileRef(TypedDict):
    """A file as jobs and clients see it (SPEC §7)."""

    sha256: str
    size: int
    name: str


class FileRow(FileRef):
    tenant: str
    created_at: float
    last_used: float


class JobFiles(TypedDict):
    input: FileRef | None
    output: FileRef | None


def m010_files(db: sqlite_utils.Database) -> None:
    """Stored files per tenant, a job's input and its attempts' outputs, and each tenant's byte quota."""
    for statement in SQLITE_SCHEMA:
        db.execute(statement)


SQLITE_SCHEMA = (
    """CREATE TABLE files (
        tenant TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        last_used REAL NOT NULL,
        PRIMARY KEY (tenant, sha256)
    ) WITHOUT ROWID""",
    "CREATE INDEX files_by_use ON files(last_used)",
    """CREATE TABLE job_files (
        job_id TEXT NOT NULL,
        role TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        stored_at REAL NOT NULL,
        PRIMARY KEY (job_id, role, attempt)
    ) WITHOUT ROWID""",
    "CREATE INDEX job_files_by_file ON job_files(tenant, sha256)",
    "ALTER TABLE tenants ADD COLUMN max_bytes INTEGER",
)

# The statements both backends run (`?` placeholders; the PostgreSQL mixin converts them).
PUT_FILE = ("INSERT INTO files (tenant, sha256, size, name, created_at, last_used) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, sha256) DO UPDATE SET last_used = excluded.last_used, name = excluded.name")
FIND_FILE = "SELECT tenant, sha256, size, name, created_at, last_used FROM files WHERE tenant = ? AND sha256 = ?"
TOUCH_FILE = "UPDATE files SET last_used = ? WHERE tenant = ? AND sha256 = ?"
TENANT_BYTES = "SELECT COALESCE(SUM(size), 0) FROM files WHERE tenant = ?"
SET_BYTES_QUOTA = ("INSERT INTO tenants (name, max_bytes) VALUES (?, ?) ON CONFLICT (name)"
                   " DO UPDATE SET max_bytes = excluded.max_bytes")
BYTES_QUOTA = "SELECT max_bytes FROM tenants WHERE name = ?"
LINK_JOB_FILE = ("INSERT INTO job_files (job_id, role, attempt, tenant, sha256, size, name, stored_at)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, role, attempt) DO UPDATE SET"
                 " sha256 = excluded.sha256, size = excluded.size, name = excluded.name,"
                 " stored_at = excluded.stored_at")
JOB_FILE = "SELECT sha256, size, name FROM job_files WHERE job_id = ? AND role = ? AND attempt = ?"
JOB_INPUT = "SELECT sha256, size, name FROM job_files WHERE job_id = ? AND role = 'input'"
JOB_OUTPUT = ("SELECT f.sha256, f.size, f.name FROM job_files f JOIN jobs j ON j.id = f.job_id WHERE f.job_id = ?"
              " AND f.role = 'output' AND j.status = 'completed' AND f.attempt = j.attempts")
# Kept: a job's input, and the output of a job's last attempt (the completed job's file, or the one being
# reported); an older attempt's output, or a file no job names, goes after the retention.
STALE_FILES = ("SELECT f.tenant, f.sha256 FROM files f WHERE f.last_used < ? AND NOT EXISTS ("
               "SELECT 1 FROM job_files r JOIN jobs j ON j.id = r.job_id WHERE r.tenant = f.tenant"
               " AND r.sha256 = f.sha256 AND (r.role = 'input' OR r.attempt = j.attempts))"
               " ORDER BY f.last_used LIMIT ?")
DELETE_FILE = "DELETE FROM files WHERE tenant = ? AND sha256 = ?"
DELETE_STALE_LINKS = "DELETE FROM job_files WHERE tenant = ? AND sha256 = ? AND role = 'output'"
OBJECT_HELD = "SELECT 1 FROM files WHERE sha256 = ? LIMIT 1"


def _ref(row: Any) -> FileRef | None:
    return None if row is None else {"sha256": str(row[0]), "size": int(row[1]), "name": str(row[2])}


class FileQueries:
    """The files part of a store, over how the backend runs one statement (`_one`, `_all`, `_write`)."""

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    def _all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        raise NotImplementedError

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        raise NotImplementedError

    def put_file(self, tenant: str, sha256: str, size: int, name: str, now: float) -> None:
        """Record that `tenant` holds this object (or that it used it again)."""
        self._write(PUT_FILE, (tenant, sha256, size, name, now, now))

    def find_file(self, tenant: str, sha256: str) -> FileRow | None:
        row = self._one(FIND_FILE, (tenant, sha256))
        if row is None:
            return None
        return {"tenant": str(row[0]), "sha256": str(row[1]), "size": int(row[2]), "name": str(row[3]),
                "created_at": float(row[4]), "last_used": float(row[5])}

    def touch_file(self, tenant: str, sha256: str, now: float) -> bool:
        return self._write(TOUCH_FILE, (now, tenant, sha256)) == 1

    def tenant_file_bytes(self, tenant: str) -> int:
        return int(self._one(TENANT_BYTES, (tenant,))[0])

    def set_bytes_quota(self, tenant: str, max_bytes: int | None) -> None:
        self._write(SET_BYTES_QUOTA, (tenant, max_bytes))

    def bytes_quota(self, tenant: str) -> int | None:
        row = self._one(BYTES_QUOTA, (tenant,))
        return None if row is None or row[0] is None else int(row[0])

    def link_job_file(self, job_id: str, role: str, attempt: int, tenant: str, ref: FileRef, now: float) -> None:
        """A job's input (role `input`, attempt 0) or one attempt's stored output (role `output`)."""
        self._write(LINK_JOB_FILE, (job_id, role, attempt, tenant, ref["sha256"], ref["size"], ref["name"], now))

    def job_file(self, job_id: str, role: str, attempt: int) -> FileRef | None:
        return _ref(self._one(JOB_FILE, (job_id, role, attempt)))

    def job_files(self, job_id: str) -> JobFiles:
        """The job's input, and its output once the attempt that stored it completed the job."""
        return {"input": _ref(self._one(JOB_INPUT, (job_id,))), "output": _ref(self._one(JOB_OUTPUT, (job_id,)))}

    def stale_files(self, before: float, limit: int) -> list[tuple[str, str]]:
        """(tenant, sha256) of files unused since `before` that no job keeps, oldest first."""
        return [(str(row[0]), str(row[1])) for row in self._all(STALE_FILES, (before, limit))]

    def delete_file(self, tenant: str, sha256: str) -> bool:
        """Forget that `tenant` holds it (and its stale attempts' links); True when some tenant still does."""
        self._write(DELETE_STALE_LINKS, (tenant, sha256))
        self._write(DELETE_FILE, (tenant, sha256))
        return self._one(OBJECT_HELD, (sha256,)) is not None


class FileRows(FileQueries):
    """The files part of `SqliteStore` (its connection; writes run in the caller's transaction)."""

    conn: sqlite3.Connection

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self.conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return list(self.conn.execute(sql, args).fetchall())

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        return int(self.conn.execute(sql, args).rowcount)
