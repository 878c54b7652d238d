"""Job transitions in the master database (a mixin of `SqliteStore`): assign, run, finish, requeue, cancel.

Every attempt-scoped write is fenced by the job's current attempt number, so a late message from an older
attempt changes nothing. Each transition also keeps the store's in-memory counts (jobs per status, pending
per lane) up to date, so `stats` never recounts a big store.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any, cast

from ffrtmp.errors import NotFound
from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import ACTIVE, TERMINAL, Assignment, Ending, JobRow

ENDING_COLUMNS = ("seq, id, status, attempts, node, queue, priority, engine, scenario, tenant, weight, max_retries,"
                  " timeout, progress, created_at, started_at, not_before, reason, log_bytes, log_dropped")
"""What `finish_jobs` reads of a job, and returns with the ending applied (all but the spec's JSON columns)."""
IN_CHUNK = 500
"""Ids per `IN (...)` list (SQLite allows 32,766 parameters; smaller lists keep statements cheap to prepare)."""


def job_from_row(row: sqlite3.Row) -> JobRow:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("metrics", {}), ("avoid", [])):
        job[key] = from_json(job[key], default)
    return cast(JobRow, job)


class TransitionRows:
    """The transitions part of `SqliteStore` (it uses the store's connection and counts)."""

    conn: sqlite3.Connection
    _counts: Counter[str] | None
    _queue_depth: Counter[tuple[str, str]] | None

    def _moved(self, old: str | None, new: str | None, count: int = 1, lane: tuple[str, str] | None = None) -> None:
        """`count` jobs went from status `old` to `new`; `lane` (queue, priority) when one side is pending."""
        if self._counts is not None:
            if old is not None:
                self._counts[old] -= count
            if new is not None:
                self._counts[new] += count
        if self._queue_depth is not None and lane is not None and (old == "pending") != (new == "pending"):
            self._queue_depth[lane] += count if new == "pending" else -count

    def _history(self, seq: int, now: float, status: str, reason: str,
                 attempt: int | None = None, node: str | None = None) -> None:
        """One event of the job whose `seq` is given (history and attempts are keyed by seq: see m005)."""
        self.conn.execute("INSERT INTO history (job_seq, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                          (seq, now, status, attempt, node, reason))

    def assign_job(self, job_id: str, node: str, now: float) -> Assignment:
        """pending → assigned. Returns what the worker needs, with `attempt`: the new fencing token."""
        row = self.conn.execute(
            "UPDATE jobs SET status = 'assigned', attempts = attempts + 1, node = ?, reason = NULL, progress = NULL"
            " WHERE id = ? AND status = 'pending'"
            " RETURNING seq, attempts, scenario, engine, queue, priority, params, labels, timeout, tenant",
            (node, job_id)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} is not pending")
        attempt = int(row["attempts"])
        self._moved("pending", "assigned", lane=(row["queue"], row["priority"]))
        self.conn.execute("INSERT INTO attempts (job_seq, attempt, node, status, assigned_at) VALUES (?,?,?,?,?)",
                          (row["seq"], attempt, node, "assigned", now))
        self._history(row["seq"], now, "assigned", f"assigned to {node}", attempt, node)
        return {"attempt": attempt, "scenario": row["scenario"], "engine": row["engine"], "queue": row["queue"],
                "priority": row["priority"], "params": from_json(row["params"], {}),
                "labels": from_json(row["labels"], {}), "timeout": row["timeout"], "tenant": row["tenant"]}

    def assign_jobs(self, picks: list[tuple[dict[str, Any], str]], now: float) -> list[int]:
        """Many pending → assigned at once (dispatch): `picks` are candidate rows with their node.

        Returns each job's new attempt number. The rows come from this connection inside the same
        transaction, so their attempt counts are current; the WHERE clause checks it anyway.
        """
        attempts = [job["attempts"] + 1 for job, _ in picks]
        cur = self.conn.executemany(
            "UPDATE jobs SET status = 'assigned', attempts = ?, node = ?, reason = NULL, progress = NULL"
            " WHERE seq = ? AND attempts = ? AND status = 'pending'",
            [(attempt, node, job["seq"], job["attempts"])
             for (job, node), attempt in zip(picks, attempts, strict=True)])
        if cur.rowcount != len(picks):
            raise NotFound("a job to dispatch was no longer pending")
        for job, _ in picks:
            self._moved("pending", "assigned", lane=(job["queue"], job["priority"]))
        self.conn.executemany("INSERT INTO attempts (job_seq, attempt, node, status, assigned_at) VALUES (?,?,?,?,?)",
                              [(job["seq"], attempt, node, "assigned", now)
                               for (job, node), attempt in zip(picks, attempts, strict=True)])
        self.conn.executemany("INSERT INTO history (job_seq, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                              [(job["seq"], now, "assigned", attempt, node, f"assigned to {node}")
                               for (job, node), attempt in zip(picks, attempts, strict=True)])
        return attempts

    def mark_running(self, job_id: str, attempt: int, started_at: float) -> JobRow | None:
        """assigned → running; returns the job as stored, or None when the attempt is stale or not assigned."""
        row = self.conn.execute(
            "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, ?)"
            " WHERE id = ? AND attempts = ? AND status = 'assigned' RETURNING *", (started_at, job_id, attempt)
        ).fetchone()
        if row is None:
            return None
        self._moved("assigned", "running")
        self.conn.execute("UPDATE attempts SET status = 'running', started_at = ? WHERE job_seq = ? AND attempt = ?",
                          (started_at, row["seq"], attempt))
        self._history(row["seq"], started_at, "running", f"running on {row['node']}", attempt, row["node"])
        return job_from_row(row)

    def record_progress(self, job_id: str, attempt: int, progress: float | None, metrics: dict[str, Any]) -> bool:
        cur = self.conn.execute(
            "UPDATE jobs SET progress = ?, metrics = ? WHERE id = ? AND attempts = ?"
            " AND status IN ('assigned','running')",
            (progress, to_json(metrics), job_id, attempt))
        return cur.rowcount == 1

    def finish_job(self, job_id: str, attempt: int, status: str, now: float, *, error: str | None = None,
                   failure: str | None = None, metrics: dict[str, Any] | None = None,
                   output: str | None = None, started_at: float | None = None) -> JobRow | None:
        """Record the end of the current attempt as the end of the job, exactly once (see `finish_jobs`)."""
        return self.finish_jobs([Ending(job_id, attempt, status, now, error=error, failure=failure,
                                        metrics=metrics, output=output, started_at=started_at)])[0]

    def finish_jobs(self, endings: list[Ending]) -> list[JobRow | None]:
        """Record many attempts' ends as their jobs' ends (a worker's batch of results), each exactly once.

        For each ending: the job as stored after it (every column but the spec: params, labels, avoid), or
        None when the attempt is stale or the job already ended (a late or repeated result changes nothing).
        `started_at`: the attempt's start, when no STARTED came before the result (recorded as well).
        A few statements for the whole batch, not four per job: this is the hot path of short jobs.
        """
        current: dict[str, dict[str, Any]] = {}
        ids = list({ending.job_id for ending in endings})
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            rows = self.conn.execute(f"SELECT {ENDING_COLUMNS} FROM jobs WHERE id IN ({','.join('?' * len(chunk))})",
                                     chunk)
            current.update((row["id"], dict(row)) for row in rows)
        results: list[JobRow | None] = []
        jobs, attempts, events = [], [], []
        for ending in endings:
            row = current.get(ending.job_id)
            if row is None or row["attempts"] != ending.attempt or row["status"] not in ACTIVE:
                results.append(None)
                continue
            before, status, now = row["status"], ending.status, ending.at
            began = now if ending.started_at is None else min(ending.started_at, now)
            metrics = ending.metrics or {}
            job = {**row, "status": status, "finished_at": now, "error": ending.error, "failure": ending.failure,
                   "metrics": metrics, "output": ending.output,
                   "progress": 1.0 if status == "completed" else row["progress"],
                   "started_at": began if row["started_at"] is None else row["started_at"]}
            jobs.append((status, now, ending.error, ending.failure, to_json(metrics), ending.output, job["progress"],
                         job["started_at"], row["seq"], ending.attempt, before))
            attempts.append((status, began, now, ending.error, ending.failure, row["seq"], ending.attempt))
            node = row["node"]
            if ending.started_at is not None and before == "assigned":
                events.append((row["seq"], began, "running", ending.attempt, node, f"running on {node}"))
            events.append((row["seq"], now, status, ending.attempt, node,
                           "completed" if status == "completed" else (ending.error or status)))
            self._moved(before, status)
            row["status"] = status  # the same attempt ending twice in one batch: the second is stale
            results.append(cast(JobRow, job))
        if not jobs:
            return results
        cur = self.conn.executemany(
            "UPDATE jobs SET status = ?, finished_at = ?, error = ?, failure = ?, metrics = ?, output = ?,"
            " progress = ?, started_at = ? WHERE seq = ? AND attempts = ? AND status = ?", jobs)
        if cur.rowcount != len(jobs):
            raise RuntimeError(f"finishing {len(jobs)} jobs changed {cur.rowcount} rows")  # a bug, not a fault
        self.conn.executemany("UPDATE attempts SET status = ?, started_at = coalesce(started_at, ?), finished_at = ?,"
                              " error = ?, failure = ? WHERE job_seq = ? AND attempt = ?", attempts)
        self.conn.executemany("INSERT INTO history (job_seq, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                              events)
        return results

    def requeue_job(self, job_id: str, attempt: int, now: float, *, failure: str, error: str | None,
                    not_before: float, avoid: str | None = None, free: bool = False) -> bool:
        """The current attempt failed in a retryable way: back to pending after `not_before`.

        `free`: the attempt does not count against the job's retries (the worker turned it down).
        """
        row = self.conn.execute("SELECT avoid, status, queue, priority, seq FROM jobs WHERE id = ? AND attempts = ?"
                                " AND status IN ('assigned','running')", (job_id, attempt)).fetchone()
        if row is None:
            return False
        self._moved(row["status"], "pending", lane=(row["queue"], row["priority"]))
        nodes = from_json(row[0], [])
        if avoid and avoid not in nodes:
            nodes.append(avoid)
        self.conn.execute(
            "UPDATE jobs SET status = 'pending', node = NULL, progress = NULL, not_before = ?, error = ?,"
            " failure = ?, avoid = ?, max_retries = max_retries + ? WHERE id = ?",
            (not_before, error, failure, to_json(nodes), int(free), job_id))
        self._end_attempt(row["seq"], attempt, "failed", now, error, failure)
        wait = f", retry in {not_before - now:.0f}s" if not_before > now + 0.5 else ""
        self._history(row["seq"], now, "pending", f"{failure}: {error or 'attempt ended'}{wait}", attempt, avoid)
        return True

    def readopt_job(self, job_id: str, attempt: int, node: str, now: float) -> bool:
        """A requeued job whose attempt turns out to be still running on `node` → running again, same attempt."""
        cur = self.conn.execute(
            "UPDATE jobs SET status = 'running', node = ?, not_before = 0, error = NULL, failure = NULL"
            " WHERE id = ? AND attempts = ? AND status = 'pending' RETURNING queue, priority, seq",
            (node, job_id, attempt))
        adopted = cur.fetchone()
        if adopted is None:
            return False
        self._moved("pending", "running", lane=(adopted[0], adopted[1]))
        self.conn.execute("UPDATE attempts SET status = 'running', finished_at = NULL, error = NULL, failure = NULL"
                          " WHERE job_seq = ? AND attempt = ?", (adopted[2], attempt))
        self._history(adopted[2], now, "running", f"adopted back: {node} still runs it", attempt, node)
        return True

    def _end_attempt(self, seq: int, attempt: int, status: str, now: float, error: str | None,
                     failure: str | None) -> None:
        self.conn.execute("UPDATE attempts SET status = ?, finished_at = ?, error = ?, failure = ?"
                          " WHERE job_seq = ? AND attempt = ?", (status, now, error, failure, seq, attempt))

    def cancel_job(self, job_id: str, now: float, reason: str = "canceled by user") -> JobRow | None:
        """Any unfinished job → canceled. Returns the job as it was, or None when it had already ended."""
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job = job_from_row(row) if row is not None else None
        if job is None or job["status"] in TERMINAL:
            return None
        self.conn.execute("UPDATE jobs SET status = 'canceled', finished_at = ?, error = ?, failure = 'canceled'"
                          " WHERE id = ?", (now, reason, job_id))
        self._moved(job["status"], "canceled", lane=(job["queue"], job["priority"]))
        if job["status"] in ACTIVE:
            self._end_attempt(job["seq"], job["attempts"], "canceled", now, reason, "canceled")
        self._history(job["seq"], now, "canceled", reason, job["attempts"] or None, job["node"])
        return job

    def retry_job(self, job_id: str, now: float) -> bool:
        """A failed or canceled job → pending again, with its retry budget renewed."""
        before = self.conn.execute("SELECT status, queue, priority, seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
        cur = self.conn.execute(
            "UPDATE jobs SET status = 'pending', not_before = 0, finished_at = NULL, error = NULL, failure = NULL,"
            " node = NULL, progress = NULL, max_retries = max_retries + attempts WHERE id = ?"
            " AND status IN ('failed','canceled')", (job_id,))
        if cur.rowcount != 1:
            return False
        self._moved(before[0], "pending", lane=(before[1], before[2]))
        self._history(before[3], now, "pending", "retried by hand")
        return True

    def set_wait_reason(self, job_id: str, reason: str | None) -> None:
        self.conn.execute("UPDATE jobs SET reason = ? WHERE id = ? AND status = 'pending'", (reason, job_id))
