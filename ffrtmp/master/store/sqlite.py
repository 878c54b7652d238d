"""The master's durable state: one narrow module of verb-named functions over SQLite.

Everything the master must not lose lives here and nowhere else. Writes happen inside `transaction()`
(`BEGIN IMMEDIATE`, so a read-then-write never meets SQLITE_BUSY); the coordinator opens one per batch of
messages (group commit) and sends nothing before it commits. Every attempt-scoped write is fenced by the
job's current attempt number, so a late message from an older attempt changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.jobspec import JobSpec
from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.dispatch import DispatchRows, needs_key
from ffrtmp.master.store.health import WriteFault, is_write_fault
from ffrtmp.master.store.lease_sqlite import LeaseRows
from ffrtmp.master.store.logs import LogRows
from ffrtmp.master.store.nodes import NodeRows
from ffrtmp.master.store.schema import MIGRATIONS

ACTIVE = ("assigned", "running")
TERMINAL = ("completed", "failed", "canceled")
ENDING_COLUMNS = ("seq, id, status, attempts, node, queue, priority, engine, scenario, tenant, weight, max_retries,"
                  " timeout, progress, created_at, started_at, not_before, reason, log_bytes, log_dropped")
"""What `finish_jobs` reads of a job, and returns with the ending applied (all but the spec's JSON columns)."""
RECENT_SCAN = 200_000
"""History rows read back at start for the last hour's activity, at most (a bounded cost on a huge store)."""
IN_CHUNK = 500
"""Ids per `IN (...)` list (SQLite allows 32,766 parameters; smaller lists keep statements cheap to prepare)."""


@dataclass(frozen=True, slots=True)
class Ending:
    """How one attempt ended, as its worker reported it or the master decided."""

    job_id: str
    attempt: int
    status: str
    at: float
    error: str | None = None
    failure: str | None = None
    metrics: dict[str, Any] | None = None
    output: str | None = None
    started_at: float | None = None



def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("metrics", {}), ("avoid", [])):
        job[key] = from_json(job[key], default)
    return job


class Store(LogRows, NodeRows, DispatchRows, LeaseRows):
    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        """`migrate=False` (tools beside a running master): a store that needs migrating is refused, since
        only the master that will use the new schema may change it under itself."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a crash of the master process (kill -9); only power loss can drop the
        # last commits. Measured: 4x the commit rate of FULL (research/zmq-perf.md §6).
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.execute("PRAGMA cache_size=-16384")  # 16 MiB: the hot pages stay in memory, RSS stays low
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self._depth = 0
        self._counts: Counter[str] | None = None
        """Jobs per status, kept up to date by every transition (so `stats` costs nothing on a big store);
        None after a rollback, and recounted when next asked."""
        self._queue_depth: Counter[tuple[str, str]] | None = None
        """Pending jobs per (queue, priority), kept the same way (queue depth for `stats` and `top`)."""
        self.on_commit: Callable[[float], None] | None = None
        """Told how long each COMMIT took (metrics)."""
        database = sqlite_utils.Database(self.conn)
        self._refuse_foreign()
        if not migrate and (pending := MIGRATIONS.pending(database)):
            self.conn.close()
            raise InvalidInput("db", f"{self.path} was written by an older ffrtmp (its schema lacks "
                               f"{', '.join(m.name for m in pending)}): stop the old master, then start this "
                               "version's `ffrtmp master` once to upgrade the store")
        MIGRATIONS.apply(database)

    def _refuse_foreign(self) -> None:
        """A database with tables but no ffrtmp migrations record is another application's: never take it over."""
        tables = [row[0] for row in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        if not tables:
            return  # empty or new: ours to create
        ours = "_sqlite_migrations" in tables and self.conn.execute(
            "SELECT 1 FROM _sqlite_migrations WHERE migration_set = 'ffrtmp' LIMIT 1").fetchone() is not None
        if not ours:
            self.conn.close()
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise InvalidInput("db", f"{self.path} is not an ffrtmp store (it holds another application's tables: "
                               f"{shown}); ffrtmp does not take over such a file: point --db or --data-dir "
                               "at a new path")

    def check_writable(self) -> None:
        """Raise the SQLite error a write would meet now (a read-only file opens, and only fails on write)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("UPDATE _sqlite_migrations SET name = name"
                              " WHERE id = (SELECT max(id) FROM _sqlite_migrations)")
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise (WriteFault(exc) if is_write_fault(exc) else exc) from exc
        self._depth = 1
        try:
            self.check_fence()  # a master that lost its lease commits nothing (store/lease_sqlite.py)
            yield
        except BaseException as exc:
            self._depth = 0
            self._rollback()
            if is_write_fault(exc):
                raise WriteFault(exc) from exc  # type: ignore[arg-type]
            raise
        self._depth = 0
        if not self.conn.in_transaction:
            # SQLite ended it by itself (it does on SQLITE_FULL or IOERR) and the error was caught on the way:
            # what followed ran outside the batch's transaction, so the batch cannot be trusted as committed.
            self._counts = self._queue_depth = None
            raise WriteFault(sqlite3.OperationalError("the transaction was rolled back by SQLite (disk full or "
                                                      "I/O error)"))
        began = time.perf_counter()
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise (WriteFault(exc) if is_write_fault(exc) else exc) from exc
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)

    def _rollback(self) -> None:
        """Undo the open transaction, if SQLite has not already (it does by itself on SQLITE_FULL)."""
        self._counts = self._queue_depth = None
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises."""
        self.conn.execute("SAVEPOINT message")
        try:
            yield
        except BaseException as exc:
            self._counts = self._queue_depth = None
            if is_write_fault(exc) or isinstance(exc, WriteFault):
                # The disk failed, not this block: the whole batch must go (SQLite may have ended it already).
                raise exc if isinstance(exc, WriteFault) else WriteFault(exc) from exc  # type: ignore[arg-type]
            self.conn.execute("ROLLBACK TO message")
            self.conn.execute("RELEASE message")
            raise
        self.conn.execute("RELEASE message")

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

    # ---- jobs -----------------------------------------------------------------------------------------

    @staticmethod
    def new_job_id() -> str:
        """128 random bits in hex, as a uuid4 but without building a UUID object (it shows in profiles)."""
        return os.urandom(16).hex()

    def insert_jobs(self, specs: Iterable[JobSpec], now: float, default_max_retries: int,
                    tenant: str = "") -> list[str]:
        ids: list[str] = []
        rows = []
        for spec in specs:
            job_id = self.new_job_id()
            ids.append(job_id)
            retries = default_max_retries if spec.max_retries is None else spec.max_retries
            rows.append((job_id, spec.scenario, spec.queue, spec.priority, spec.weight, spec.engine,
                         to_json(spec.params), to_json(spec.labels), tenant, retries, spec.timeout, now,
                         needs_key(spec.engine, spec.params, spec.labels)))
        self.conn.executemany(
            "INSERT INTO jobs (id, status, scenario, queue, priority, weight, engine, params, labels, tenant,"
            " max_retries, timeout, created_at, needs) VALUES (?, 'pending', ?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if not ids:
            return ids
        # One writer, one statement: the new rows took the seqs right below the last one, in order.
        last = self.conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        self.conn.execute("INSERT INTO history (job_seq, at, status, reason) SELECT seq, ?, 'pending', 'submitted'"
                          " FROM jobs WHERE seq BETWEEN ? AND ? ORDER BY seq", (now, last - len(ids) + 1, last))
        self._moved(None, "pending", len(ids))
        if self._queue_depth is not None:
            self._queue_depth.update((row[2], row[3]) for row in rows)  # (queue, priority) of each new job
        return ids

    def submitted_ids(self, tenant: str, key: str) -> list[str] | None:
        """The ids a submit with this idempotency key was given, if the master still remembers it."""
        row = self.conn.execute("SELECT ids FROM submit_keys WHERE tenant = ? AND key = ?", (tenant, key)).fetchone()
        return None if row is None else list(from_json(row[0], []))

    def remember_submit(self, tenant: str, key: str, ids: list[str], now: float) -> None:
        """In the submit's own transaction: the jobs and their key are stored together, or neither is."""
        self.conn.execute("INSERT INTO submit_keys (tenant, key, ids, created_at) VALUES (?,?,?,?)",
                          (tenant, key, to_json(ids), now))

    def forget_submit_keys(self, before: float) -> int:
        return self.conn.execute("DELETE FROM submit_keys WHERE created_at < ?", (before,)).rowcount

    def resolve_job_id(self, prefix: str, tenant: str | None = None) -> str:
        """A full id or any unique prefix of one; with `tenant`, only that tenant's jobs exist."""
        text = prefix.strip().lower()
        if not text or len(text) > 32 or any(c not in "0123456789abcdef" for c in text):
            raise NotFound(f"no job {prefix!r}")
        rows = self.conn.execute("SELECT id FROM jobs WHERE id >= ? AND id < ? AND (? IS NULL OR tenant = ?)"
                                 " LIMIT 2", (text, text + "g", tenant, tenant)).fetchall()
        if not rows:
            raise NotFound(f"no job {prefix!r}")
        if len(rows) > 1:
            raise InvalidInput("id", f"{prefix!r} matches several jobs; give more characters")
        return str(rows[0]["id"])

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_history(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT at, status, attempt, node, reason FROM history"
                                 " WHERE job_seq = (SELECT seq FROM jobs WHERE id = ?) ORDER BY rowid", (job_id,))
        return [dict(row) for row in rows]

    def job_attempts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, a.started_at,"
                                 " a.finished_at, a.error, a.failure FROM jobs j JOIN attempts a ON a.job_seq = j.seq"
                                 " WHERE j.id = ? ORDER BY a.attempt", (job_id,))
        return [dict(row) for row in rows]

    def list_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first; with `before` (a cursor: the last page's smallest seq), the jobs older than it."""
        with closing(self.iter_jobs(status, queue, node, limit, tenant, before)) as rows:
            return list(rows)

    def iter_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None,
                  before: int | None = None) -> Generator[dict[str, Any], None, None]:
        """`list_jobs` read lazily, so a caller can stop early; close it before writing on this connection."""
        where: list[str] = []
        args: list[str | int] = []
        for column, value in (("status", status), ("queue", queue), ("node", node), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        try:
            for row in rows:
                yield _job(row)
        finally:
            rows.close()

    def pending_candidates(self, now: float, limit: int,
                           aged_before: float | None = None) -> Iterator[dict[str, Any]]:
        """Pending jobs in dispatch order whose backoff has passed, at most `limit`: the head of every lane
        (store_dispatch.py), merged in SPEC §3 order with tenants taking turns (dispatch.fair_order). With
        `aged_before` (aging), jobs created before it come first, oldest first. Dispatch itself reads only
        the lanes a free node can take (dispatch.read_candidates)."""
        from ffrtmp.master.dispatch import fair_order  # dispatch builds on the store, not the other way

        heads = [job for lane in self.pending_lanes(lambda needs: False) for job in self.lane_head(lane, now, limit)]
        yield from fair_order(heads, aged_before)[:limit]

    def pending_by_engine(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT engine, count(*) AS n FROM jobs WHERE status = 'pending' GROUP BY engine")
        return {row["engine"]: row["n"] for row in rows}

    def status_counts(self, tenant: str | None = None) -> dict[str, int]:
        if tenant is None:
            if self._counts is None:
                rows = self.conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status")
                self._counts = Counter({row["status"]: row["n"] for row in rows})
            return {status: n for status, n in self._counts.items() if n}
        else:
            rows = self.conn.execute("SELECT status, count(*) AS n FROM jobs WHERE tenant = ? GROUP BY status",
                                     (tenant,))
        return {row["status"]: row["n"] for row in rows}

    def tenant_pending(self, tenant: str) -> int:
        return int(self.conn.execute("SELECT count(*) FROM jobs WHERE tenant = ? AND status = 'pending'",
                                     (tenant,)).fetchone()[0])

    def pending_by_queue(self, tenant: str | None = None) -> dict[str, dict[str, int]]:
        """Pending jobs per queue and priority (queue depth), of one tenant or all."""
        depth: dict[str, dict[str, int]] = {}
        if tenant is None and self._queue_depth is not None:
            for (queue, priority), count in self._queue_depth.items():
                if count:
                    depth.setdefault(queue, {})[priority] = count
            return depth
        if tenant is None:
            rows = self.conn.execute("SELECT queue, priority, count(*) FROM jobs WHERE status = 'pending'"
                                     " GROUP BY queue, priority")
            self._queue_depth = Counter({(row[0], row[1]): row[2] for row in rows})
            return self.pending_by_queue()
        for row in self.conn.execute("SELECT queue, priority, count(*) FROM jobs WHERE status = 'pending'"
                                     " AND (? IS NULL OR tenant = ?) GROUP BY queue, priority", (tenant, tenant)):
            depth.setdefault(row[0], {})[row[1]] = row[2]
        return depth

    def assign_job(self, job_id: str, node: str, now: float) -> dict[str, Any]:
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

    def mark_running(self, job_id: str, attempt: int, started_at: float) -> dict[str, Any] | None:
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
        return _job(row)

    def record_progress(self, job_id: str, attempt: int, progress: float | None, metrics: dict[str, Any]) -> bool:
        cur = self.conn.execute(
            "UPDATE jobs SET progress = ?, metrics = ? WHERE id = ? AND attempts = ?"
            " AND status IN ('assigned','running')",
            (progress, to_json(metrics), job_id, attempt))
        return cur.rowcount == 1

    def finish_job(self, job_id: str, attempt: int, status: str, now: float, *, error: str | None = None,
                   failure: str | None = None, metrics: dict[str, Any] | None = None,
                   output: str | None = None, started_at: float | None = None) -> dict[str, Any] | None:
        """Record the end of the current attempt as the end of the job, exactly once (see `finish_jobs`)."""
        return self.finish_jobs([Ending(job_id, attempt, status, now, error=error, failure=failure,
                                        metrics=metrics, output=output, started_at=started_at)])[0]

    def finish_jobs(self, endings: list[Ending]) -> list[dict[str, Any] | None]:
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
        results: list[dict[str, Any] | None] = []
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
            results.append(job)
        if not jobs:
            return results
        cur = self.conn.executemany(
            "UPDATE jobs SET status = ?, finished_at = ?, error = ?, failure = ?, metrics = ?, output = ?,"
            " progress = ?, started_at = ? WHERE seq = ? AND attempts = ? AND status = ?", jobs)
        if cur.rowcount != len(jobs):
            raise RuntimeError(f"finishing {len(jobs)} jobs changed {cur.rowcount} rows")
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

    def cancel_job(self, job_id: str, now: float, reason: str = "canceled by user") -> dict[str, Any] | None:
        """Any unfinished job → canceled. Returns the job as it was, or None when it had already ended."""
        job = self.get_job(job_id)
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

    def recent_endings(self, since: float, scan: int = RECENT_SCAN) -> list[tuple[float, str, str]]:
        """(time, status, tenant) of jobs completed or failed since `since`, from the newest `scan` history rows
        (history is appended in time order: this reads its tail, never the whole table)."""
        rows = self.conn.execute(
            "SELECT h.at, h.status, j.tenant FROM history h JOIN jobs j ON j.seq = h.job_seq"
            " WHERE h.rowid > (SELECT coalesce(max(rowid), 0) FROM history) - ? AND h.at >= ?"
            " AND h.status IN ('completed', 'failed')", (scan, since))
        return [(row[0], row[1], row[2]) for row in rows]

    def active_attempts(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, j.queue, j.timeout, j.params, j.tenant"
            " FROM attempts a JOIN jobs j"
            " ON j.seq = a.job_seq AND j.attempts = a.attempt WHERE a.status IN ('assigned','running')"
            " AND j.status IN ('assigned','running')")
        return [{**dict(row), "params": from_json(row["params"], {})} for row in rows]
