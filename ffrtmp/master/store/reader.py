"""Reads for the metrics thread on a read-only SQLite connection of their own.

A WAL reader never blocks the coordinator's writer, and the HTTP thread never touches the coordinator's
connection. A connection that failed is dropped and opened again on the next read.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from ffrtmp.master.store.api import StoreUnreachable


class SqliteReader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None

    def _read(self, *queries: str) -> list[list[Any]]:
        """Run reads in one snapshot, so the queue depths add up to the pending count."""
        with self.lock:
            try:
                if self.conn is None:
                    self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                                isolation_level=None)
                self.conn.execute("BEGIN")
                try:
                    return [self.conn.execute(sql).fetchall() for sql in queries]
                finally:
                    self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.close()
                raise StoreUnreachable(exc) from exc

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
