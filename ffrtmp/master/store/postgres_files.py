"""Stored files on PostgreSQL (a mixin of `PostgresStore`): the SQL of files.py, the same results."""

from __future__ import annotations

from typing import Any

from ffrtmp.master.store.files import FileQueries
from ffrtmp.master.store.postgres_session import Session

POSTGRES_SCHEMA = (
    """CREATE TABLE files (
        tenant text COLLATE "C" NOT NULL,
        sha256 text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        name text NOT NULL DEFAULT '',
        created_at double precision NOT NULL,
        last_used double precision NOT NULL,
        PRIMARY KEY (tenant, sha256)
    )""",
    "CREATE INDEX files_by_use ON files (last_used)",
    """CREATE TABLE job_files (
        job_id text COLLATE "C" NOT NULL,
        role text NOT NULL,
        attempt integer NOT NULL,
        tenant text COLLATE "C" NOT NULL,
        sha256 text COLLATE "C" NOT NULL,
        size bigint NOT NULL,
        name text NOT NULL DEFAULT '',
        stored_at double precision NOT NULL,
        PRIMARY KEY (job_id, role, attempt)
    )""",
    "CREATE INDEX job_files_by_file ON job_files (tenant, sha256)",
    "ALTER TABLE tenants ADD COLUMN max_bytes bigint",
)


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class FileRows(Session, FileQueries):
    """The files queries over this session: only how a statement runs differs from SQLite."""

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self.one(_pg(sql), args)  # a Row reads by position too

    def _all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        return list(self.all(_pg(sql), args))

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self.transaction():
            self.quotas_changed()  # a byte quota may add a tenant's row
            return int(self.execute(_pg(sql), args).rowcount)
