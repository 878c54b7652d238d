"""A job's life on PostgreSQL: claims, starts, ends, retries (a mixin of `PostgresStore`).

The same transitions and results as the SQLite store (sqlite.py), each fenced by the job's attempt number.
Claims and batched ends are one statement each (data-modifying CTEs over `unnest` arrays): the job row,
its attempt and its history event change in one round trip, whatever the batch's size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from ffrtmp.errors import NotFound
from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import Assignment, JobRow
from ffrtmp.master.store.postgres_session import Row, Session
from ffrtmp.master.store.sqlite import ACTIVE, TERMINAL, Ending
from ffrtmp.master.store.transitions import ENDING_COLUMNS

P = ParamSpec("P")
R = TypeVar("R")


def writes(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write in a transaction (joining the caller's): atomic, and fenced when the store is."""

    @functools.wraps(method)
    def inside(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, Session)
        with store.transaction():
            return method(*args, **kwargs)

    return inside


def job_of(row: Row) -> JobRow:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("metrics", {}), ("avoid", [])):
        job[key] = from_json(job[key], default)
    return cast(JobRow, job)


ASSIGN_MANY = """
WITH picks AS (SELECT * FROM unnest(%b::bigint[], %b::int[], %b::text[]) WITH ORDINALITY AS p(seq, before, node, ord)),
claimed AS (
    UPDATE jobs j SET status = 'assigned', attempts = p.before + 1, node = p.node, reason = NULL, progress = NULL
    FROM picks p WHERE j.seq = p.seq AND j.attempts = p.before AND j.status = 'pending'
    RETURNING j.seq, j.attempts, j.node),
ordered AS (SELECT c.* FROM claimed c JOIN picks p ON p.seq = c.seq ORDER BY p.ord),
a AS (INSERT INTO attempts (job_seq, attempt, node, status, assigned_at)
      SELECT seq, attempts, node, 'assigned', %s FROM ordered),
h AS (INSERT INTO history (job_seq, at, status, attempt, node, reason)
      SELECT seq, %s, 'assigned', attempts, node, 'assigned to ' || node FROM ordered)
SELECT count(*) AS n FROM claimed"""

FINISH_MANY = """
WITH e AS (SELECT * FROM unnest(%b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[],
                                 %b::float8[], %b::float8[], %b::bigint[], %b::int[], %b::text[], %b::float8[])
           AS e(status, at, error, failure, metrics, output, progress, started_at, seq, attempt, before, began)),
j AS (UPDATE jobs SET status = e.status, finished_at = e.at, error = e.error, failure = e.failure, metrics = e.metrics,
             output = e.output, progress = e.progress, started_at = e.started_at
      FROM e WHERE jobs.seq = e.seq AND jobs.attempts = e.attempt AND jobs.status = e.before RETURNING 1),
a AS (UPDATE attempts SET status = e.status, started_at = coalesce(attempts.started_at, e.began),
             finished_at = e.at, error = e.error, failure = e.failure
      FROM e WHERE attempts.job_seq = e.seq AND attempts.attempt = e.attempt),
h AS (INSERT INTO history (job_seq, at, status, attempt, node, reason)
      SELECT job_seq, at, status, attempt, node, reason
      FROM unnest(%b::bigint[], %b::float8[], %b::text[], %b::int[], %b::text[], %b::text[])
      WITH ORDINALITY AS v(job_seq, at, status, attempt, node, reason, ord) ORDER BY ord)
SELECT count(*) AS n FROM j"""


class LifecycleRows(Session):
    """Job transitions; the status counters are kept as by the SQLite store (`_moved`)."""

    def _moved(self, old: str | None, new: str | None, count: int = 1, lane: tuple[str, str] | None = None) -> None:
        if self._counts is not None:
            if old is not None:
                self._counts[old] -= count
            if new is not None:
                self._counts[new] += count
        if self._queue_depth is not None and lane is not None and (old == "pending") != (new == "pending"):
            self._queue_depth[lane] += count if new == "pending" else -count

    def _history(self, seq: int, now: float, status: str, reason: str,
                 attempt: int | None = None, node: str | None = None) -> None:
        self.execute("INSERT INTO history (job_seq, at, status, attempt, node, reason) VALUES (%s,%s,%s,%s,%s,%s)",
                     (seq, now, status, attempt, node, reason))

    def _end_attempt(self, seq: int, attempt: int, status: str, now: float, error: str | None,
                     failure: str | None) -> None:
        self.execute("UPDATE attempts SET status = %s, finished_at = %s, error = %s, failure = %s"
                     " WHERE job_seq = %s AND attempt = %s", (status, now, error, failure, seq, attempt))

    @writes
    def assign_job(self, job_id: str, node: str, now: float) -> Assignment:
        """pending → assigned. Returns what the worker needs, with `attempt`: the new fencing token."""
        row = self.one(
            "WITH c AS (UPDATE jobs SET status = 'assigned', attempts = attempts + 1, node = %s, reason = NULL,"
            " progress = NULL WHERE id = %s AND status = 'pending'"
            " RETURNING seq, attempts, scenario, engine, queue, priority, params, labels, timeout, tenant),"
            " a AS (INSERT INTO attempts (job_seq, attempt, node, status, assigned_at)"
            " SELECT seq, attempts, %s, 'assigned', %s FROM c),"
            " h AS (INSERT INTO history (job_seq, at, status, attempt, node, reason)"
            " SELECT seq, %s, 'assigned', attempts, %s, %s FROM c) SELECT * FROM c",
            (node, job_id, node, now, now, node, f"assigned to {node}"))
        if row is None:
            raise NotFound(f"job {job_id} is not pending")
        self._moved("pending", "assigned", lane=(row["queue"], row["priority"]))
        return {"attempt": int(row["attempts"]), "scenario": row["scenario"], "engine": row["engine"],
                "queue": row["queue"], "priority": row["priority"], "params": from_json(row["params"], {}),
                "labels": from_json(row["labels"], {}), "timeout": row["timeout"], "tenant": row["tenant"]}

    @writes
    def assign_jobs(self, picks: list[tuple[dict[str, Any], str]], now: float) -> list[int]:
        """Many pending → assigned at once (dispatch), in one statement; each job's new attempt number.

        The rows were read with FOR UPDATE SKIP LOCKED in this transaction (`lane_head`), so their attempt
        counts are current; the statement checks them anyway.
        """
        if not picks:
            return []
        row = self.one(ASSIGN_MANY, ([job["seq"] for job, _ in picks], [job["attempts"] for job, _ in picks],
                                     [node for _, node in picks], now, now))
        if row is None or row["n"] != len(picks):
            raise NotFound("a job to dispatch was no longer pending")
        for job, _ in picks:
            self._moved("pending", "assigned", lane=(job["queue"], job["priority"]))
        return [job["attempts"] + 1 for job, _ in picks]

    @writes
    def mark_running(self, job_id: str, attempt: int, started_at: float) -> JobRow | None:
        """assigned → running; returns the job as stored, or None when the attempt is stale or not assigned."""
        row = self.one(
            "WITH r AS (UPDATE jobs SET status = 'running', started_at = coalesce(started_at, %s)"
            " WHERE id = %s AND attempts = %s AND status = 'assigned' RETURNING *),"
            " a AS (UPDATE attempts SET status = 'running', started_at = %s FROM r"
            " WHERE attempts.job_seq = r.seq AND attempts.attempt = r.attempts),"
            " h AS (INSERT INTO history (job_seq, at, status, attempt, node, reason)"
            " SELECT seq, %s, 'running', attempts, node, 'running on ' || coalesce(node, 'None') FROM r)"
            " SELECT * FROM r", (started_at, job_id, attempt, started_at, started_at))
        if row is None:
            return None
        self._moved("assigned", "running")
        return job_of(row)

    @writes
    def record_progress(self, job_id: str, attempt: int, progress: float | None, metrics: dict[str, Any]) -> bool:
        cur = self.execute("UPDATE jobs SET progress = %s, metrics = %s WHERE id = %s AND attempts = %s"
                           " AND status IN ('assigned','running')", (progress, to_json(metrics), job_id, attempt))
        return cur.rowcount == 1

    def finish_job(self, job_id: str, attempt: int, status: str, now: float, *, error: str | None = None,
                   failure: str | None = None, metrics: dict[str, Any] | None = None,
                   output: str | None = None, started_at: float | None = None) -> JobRow | None:
        """Record the end of the current attempt as the end of the job, exactly once (see `finish_jobs`)."""
        return self.finish_jobs([Ending(job_id, attempt, status, now, error=error, failure=failure,
                                        metrics=metrics, output=output, started_at=started_at)])[0]

    @writes
    def finish_jobs(self, endings: list[Ending]) -> list[JobRow | None]:
        """Many attempts' ends as their jobs' ends, each exactly once (as the SQLite store's `finish_jobs`):
        one read of the jobs (locked) and one statement for all their writes, whatever the batch's size."""
        ids = list({ending.job_id for ending in endings})
        current = {row["id"]: dict(row) for row in
                   self.all(f"SELECT {ENDING_COLUMNS} FROM jobs WHERE id = ANY(%b) FOR UPDATE", (ids,))}
        results: list[JobRow | None] = []
        jobs: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
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
                         job["started_at"], row["seq"], ending.attempt, before, began))
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
        changed = self.one(FINISH_MANY, (*(list(column) for column in zip(*jobs, strict=True)),
                                         *(list(column) for column in zip(*events, strict=True))))
        if changed is None or changed["n"] != len(jobs):
            raise RuntimeError(f"finishing {len(jobs)} jobs changed {changed and changed['n']} rows")
        return results

    @writes
    def requeue_job(self, job_id: str, attempt: int, now: float, *, failure: str, error: str | None,
                    not_before: float, avoid: str | None = None, free: bool = False) -> bool:
        """The current attempt failed in a retryable way: back to pending after `not_before`.

        `free`: the attempt does not count against the job's retries (the worker turned it down).
        """
        row = self.one("SELECT avoid, status, queue, priority, seq FROM jobs WHERE id = %s AND attempts = %s"
                       " AND status IN ('assigned','running') FOR UPDATE", (job_id, attempt))
        if row is None:
            return False
        self._moved(row["status"], "pending", lane=(row["queue"], row["priority"]))
        nodes = from_json(row["avoid"], [])
        if avoid and avoid not in nodes:
            nodes.append(avoid)
        self.execute(
            "UPDATE jobs SET status = 'pending', node = NULL, progress = NULL, not_before = %s, error = %s,"
            " failure = %s, avoid = %s, max_retries = max_retries + %s WHERE id = %s",
            (not_before, error, failure, to_json(nodes), int(free), job_id))
        self._end_attempt(row["seq"], attempt, "failed", now, error, failure)
        wait = f", retry in {not_before - now:.0f}s" if not_before > now + 0.5 else ""
        self._history(row["seq"], now, "pending", f"{failure}: {error or 'attempt ended'}{wait}", attempt, avoid)
        return True

    @writes
    def readopt_job(self, job_id: str, attempt: int, node: str, now: float) -> bool:
        """A requeued job whose attempt turns out to be still running on `node` → running again, same attempt."""
        adopted = self.one(
            "UPDATE jobs SET status = 'running', node = %s, not_before = 0, error = NULL, failure = NULL"
            " WHERE id = %s AND attempts = %s AND status = 'pending' RETURNING queue, priority, seq",
            (node, job_id, attempt))
        if adopted is None:
            return False
        self._moved("pending", "running", lane=(adopted["queue"], adopted["priority"]))
        self.execute("UPDATE attempts SET status = 'running', finished_at = NULL, error = NULL, failure = NULL"
                     " WHERE job_seq = %s AND attempt = %s", (adopted["seq"], attempt))
        self._history(adopted["seq"], now, "running", f"adopted back: {node} still runs it", attempt, node)
        return True

    @writes
    def cancel_job(self, job_id: str, now: float, reason: str = "canceled by user") -> JobRow | None:
        """Any unfinished job → canceled. Returns the job as it was, or None when it had already ended."""
        row = self.one("SELECT * FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        if row is None or row["status"] in TERMINAL:
            return None
        job = job_of(row)
        self.execute("UPDATE jobs SET status = 'canceled', finished_at = %s, error = %s, failure = 'canceled'"
                     " WHERE id = %s", (now, reason, job_id))
        self._moved(job["status"], "canceled", lane=(job["queue"], job["priority"]))
        if job["status"] in ACTIVE:
            self._end_attempt(job["seq"], job["attempts"], "canceled", now, reason, "canceled")
        self._history(job["seq"], now, "canceled", reason, job["attempts"] or None, job["node"])
        return job

    @writes
    def retry_job(self, job_id: str, now: float) -> bool:
        """A failed or canceled job → pending again, with its retry budget renewed."""
        before = self.one("SELECT status, queue, priority, seq FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        cur = self.execute(
            "UPDATE jobs SET status = 'pending', not_before = 0, finished_at = NULL, error = NULL, failure = NULL,"
            " node = NULL, progress = NULL, max_retries = max_retries + attempts WHERE id = %s"
            " AND status IN ('failed','canceled')", (job_id,))
        if cur.rowcount != 1 or before is None:
            return False
        self._moved(before["status"], "pending", lane=(before["queue"], before["priority"]))
        self._history(before["seq"], now, "pending", "retried by hand")
        return True

    @writes
    def set_wait_reason(self, job_id: str, reason: str | None) -> None:
        self.execute("UPDATE jobs SET reason = %s WHERE id = %s AND status = 'pending'", (reason, job_id))
