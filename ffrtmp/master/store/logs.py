"""Job log lines in the master database: stored per job and attempt, counted for the cap and retention."""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from ffrtmp.master.store.api import LogLine


class LogRows:
    """The log part of `Store` (a mixin: it uses the store's connection)."""

    conn: sqlite3.Connection

    def append_logs(self, job_id: str, attempt: int, lines: list[tuple[int, float, str, str]],
                    dropped: int = 0) -> None:
        """Store lines (seq, at, stream, text) and account for their size; `dropped` counts lines cut by the cap."""
        self.conn.executemany("INSERT INTO logs (job_id, attempt, seq, at, stream, line) VALUES (?,?,?,?,?,?)",
                              [(job_id, attempt, *line) for line in lines])
        size = sum(len(line[3]) + 1 for line in lines)
        self.conn.execute("UPDATE jobs SET log_bytes = log_bytes + ?, log_dropped = log_dropped + ? WHERE id = ?",
                          (size, dropped, job_id))

    def log_size(self, job_id: str) -> tuple[int, int]:
        """(bytes stored, lines dropped by the cap) for one job."""
        row = self.conn.execute("SELECT log_bytes, log_dropped FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def log_owner(self, job_id: str) -> tuple[int, int, str]:
        """(bytes stored, lines dropped by the cap, tenant) for one job."""
        row = self.conn.execute("SELECT log_bytes, log_dropped, tenant FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return (int(row[0]), int(row[1]), str(row[2])) if row else (0, 0, "")

    def max_log_seq(self, job_id: str, attempt: int) -> int | None:
        """The highest seq stored for one attempt (None: none yet)."""
        row = self.conn.execute("SELECT max(seq) FROM logs WHERE job_id = ? AND attempt = ?",
                                (job_id, attempt)).fetchone()
        return None if row[0] is None else int(row[0])

    def log_bytes_by_tenant(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT tenant, sum(log_bytes) FROM jobs WHERE log_bytes > 0 GROUP BY tenant")
        return {str(row[0]): int(row[1]) for row in rows}

    def total_log_bytes(self) -> int:
        return int(self.conn.execute("SELECT coalesce(sum(log_bytes), 0) FROM jobs").fetchone()[0])

    def jobs_with_old_logs(self, finished_before: float | None, limit: int,
                           tenant: str | None = None) -> list[tuple[str, int, str]]:
        """(job id, log bytes, tenant) of finished jobs that still hold logs, oldest first; before a time when
        given, of one tenant when given."""
        sql = ("SELECT id, log_bytes, tenant FROM jobs INDEXED BY jobs_with_logs WHERE log_bytes > 0"
               " AND finished_at IS NOT NULL")
        args: list[Any] = []
        if finished_before is not None:
            sql += " AND finished_at < ?"
            args.append(finished_before)
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        rows = self.conn.execute(sql + " ORDER BY finished_at LIMIT ?", (*args, limit))
        return [(row[0], int(row[1]), str(row[2])) for row in rows]

    def delete_logs(self, job_ids: list[str]) -> None:
        marks = ",".join("?" * len(job_ids))
        self.conn.execute(f"DELETE FROM logs WHERE job_id IN ({marks})", job_ids)
        self.conn.execute(f"UPDATE jobs SET log_bytes = 0 WHERE id IN ({marks})", job_ids)

    def job_logs(self, job_id: str, attempt: int | None = None, tail: int | None = None,
                 min_attempt: int | None = None) -> list[LogLine]:
        """Lines of one attempt, or of all (`attempt` None), or of `min_attempt` onward; the last `tail` only."""
        where = "job_id = ?"
        args: list[Any] = [job_id]
        if attempt is not None:
            where += " AND attempt = ?"
            args.append(attempt)
        if min_attempt is not None:
            where += " AND attempt >= ?"
            args.append(min_attempt)
        if tail is not None:
            sql = (f"SELECT * FROM (SELECT attempt, seq, at, stream, line FROM logs WHERE {where}"
                   " ORDER BY attempt DESC, seq DESC LIMIT ?) ORDER BY attempt, seq")
            args.append(tail)
        else:
            sql = f"SELECT attempt, seq, at, stream, line FROM logs WHERE {where} ORDER BY attempt, seq"
        return [cast(LogLine, dict(row)) for row in self.conn.execute(sql, args)]
