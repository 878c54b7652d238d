"""Reads for the metrics thread on a PostgreSQL connection of its own (the `StoreReader` of `PostgresStore`).

The HTTP thread never touches the coordinator's connection; both reads run in one REPEATABLE READ
transaction, so the queue depths add up to the pending count. A connection that failed is dropped and
opened again on the next read; a lost server is `StoreUnreachable`, never a traceback.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from ffrtmp.master.store.api import StoreUnreachable
from ffrtmp.master.store.postgres_session import CONNECT_TIMEOUT, first_line, redact


class PostgresReader:
    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.conn: psycopg.Connection[Any] | None = None

    def _read(self, *queries: str) -> list[list[Any]]:
        with self.lock:
            try:
                if self.conn is None or self.conn.closed or self.conn.broken:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    return [self.conn.execute(sql).fetchall() for sql in queries]
            except psycopg.Error as exc:
                self.close()
                raise StoreUnreachable(RuntimeError(f"PostgreSQL at {redact(self.url)}: {first_line(exc)}")
                                       ) from exc

    def job_counts(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        by_status, depth = self._read("SELECT status, count(*) FROM jobs GROUP BY status",
                                      "SELECT queue, priority, count(*) FROM jobs WHERE status = 'pending'"
                                      " GROUP BY queue, priority")
        return ({str(status): int(n) for status, n in by_status},
                {(str(queue), str(priority)): int(n) for queue, priority, n in depth})

    def ping(self) -> None:
        self._read("SELECT 1 FROM jobs LIMIT 1")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
