"""The master's durable state: one narrow module of verb-named functions over SQLite.

Everything the master must not lose lives here and nowhere else. Writes happen inside `transaction()`
(`BEGIN IMMEDIATE`, so a read-then-write never meets SQLITE_BUSY); the coordinator opens one per batch of
messages (group commit) and sends nothing before it commits. Every attempt-scoped write is fenced by the
job's current attempt number, so a late message from an older attempt changes nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.jobspec import JobSpec

ACTIVE = ("assigned", "running")
CANDIDATE_COLUMNS = "id, engine, queue, params, labels, avoid, reason, attempts, tenant, scenario, priority, timeout"
"""What dispatch reads of a pending job: enough to place it and to tell the worker about it."""
TERMINAL = ("completed", "failed", "canceled")

MIGRATIONS = Migrations("ffrtmp")


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    for statement in (
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL,
            scenario TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority TEXT NOT NULL,
            weight INTEGER NOT NULL,
            engine TEXT NOT NULL,
            params TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            tenant TEXT NOT NULL DEFAULT '',
            max_retries INTEGER NOT NULL,
            timeout REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            node TEXT,
            progress REAL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            not_before REAL NOT NULL DEFAULT 0,
            error TEXT,
            failure TEXT,
            output TEXT,
            metrics TEXT NOT NULL DEFAULT '{}',
            avoid TEXT NOT NULL DEFAULT '[]',
            reason TEXT
        )""",
        # The dispatch order (SPEC §3): weight, then FIFO. The index matches the ORDER BY exactly.
        "CREATE INDEX jobs_dispatch ON jobs(weight DESC, seq) WHERE status = 'pending'",
        "CREATE INDEX jobs_by_status ON jobs(status, seq)",
        """CREATE TABLE attempts (
            job_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            node TEXT NOT NULL,
            status TEXT NOT NULL,
            assigned_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            failure TEXT,
            PRIMARY KEY (job_id, attempt)
        ) WITHOUT ROWID""",
        "CREATE INDEX attempts_active ON attempts(node) WHERE status IN ('assigned', 'running')",
        """CREATE TABLE history (
            job_id TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER,
            node TEXT,
            reason TEXT
        )""",
        "CREATE INDEX history_by_job ON history(job_id)",
        """CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,
            version TEXT NOT NULL,
            slots INTEGER NOT NULL,
            engines TEXT NOT NULL,
            encoders TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            resources TEXT NOT NULL DEFAULT '{}',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL
        )""",
        """CREATE TABLE logs (
            job_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            stream TEXT NOT NULL,
            line TEXT NOT NULL
        )""",
        "CREATE INDEX logs_by_job ON logs(job_id, attempt, seq)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m002_log_accounting(db: sqlite_utils.Database) -> None:
    """Per-job log size for the cap and for retention by total size."""
    for statement in (
        "ALTER TABLE jobs ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN log_dropped INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_with_logs ON jobs(finished_at) WHERE log_bytes > 0 AND finished_at IS NOT NULL",
    ):
        db.execute(statement)


@MIGRATIONS()
def m003_keys_and_tenants(db: sqlite_utils.Database) -> None:
    """API keys with roles and tenants (stored hashed), per-tenant quotas, and each node's CURVE key."""
    for statement in (
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            role TEXT NOT NULL,
            tenant TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            revoked_at REAL
        )""",
        """CREATE TABLE tenants (
            name TEXT PRIMARY KEY,
            max_pending INTEGER,
            max_running INTEGER
        )""",
        "ALTER TABLE nodes ADD COLUMN curve_key TEXT",
        "CREATE INDEX jobs_by_tenant ON jobs(tenant, status)",
    ):
        db.execute(statement)


@MIGRATIONS()
def m004_tenant_listing(db: sqlite_utils.Database) -> None:
    """A tenant's listing newest first without sorting its jobs, and its pending count for quotas.

    Neither index holds the status of every job: a job changes status four times in its life, and an
    index on it would be rewritten each time (these are what the hot path pays for).
    """
    for statement in (
        "DROP INDEX jobs_by_tenant",
        "CREATE INDEX jobs_by_tenant_seq ON jobs(tenant, seq)",
        "CREATE INDEX jobs_pending_by_tenant ON jobs(tenant) WHERE status = 'pending'",
    ):
        db.execute(statement)


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("metrics", {}), ("avoid", [])):
        job[key] = _loads(job[key], default)
    return job


class Store:
    def __init__(self, path: str | Path) -> None:
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
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hot pages of a big store stay in memory
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self._depth = 0
        self._counts: Counter[str] | None = None
        """Jobs per status, kept up to date by every transition (so `stats` costs nothing on a big store);
        None after a rollback, and recounted when next asked."""
        self._queue_depth: Counter[tuple[str, str]] | None = None
        """Pending jobs per (queue, priority), kept the same way (queue depth for `stats` and `top`)."""
        self.on_commit: Callable[[float], None] | None = None
        """Told how long each COMMIT took (metrics)."""
        MIGRATIONS.apply(sqlite_utils.Database(self.conn))

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
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._counts = self._queue_depth = None
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        began = time.perf_counter()
        self.conn.execute("COMMIT")
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises."""
        self.conn.execute("SAVEPOINT message")
        try:
            yield
        except BaseException:
            self._counts = self._queue_depth = None
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

    def _history(self, job_id: str, now: float, status: str, reason: str,
                 attempt: int | None = None, node: str | None = None) -> None:
        self.conn.execute("INSERT INTO history (job_id, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                          (job_id, now, status, attempt, node, reason))

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
                         _dumps(spec.params), _dumps(spec.labels), tenant, retries, spec.timeout, now))
        self.conn.executemany(
            "INSERT INTO jobs (id, status, scenario, queue, priority, weight, engine, params, labels, tenant,"
            " max_retries, timeout, created_at) VALUES (?, 'pending', ?,?,?,?,?,?,?,?,?,?,?)", rows)
        self.conn.executemany("INSERT INTO history (job_id, at, status, reason) VALUES (?,?,'pending','submitted')",
                              [(job_id, now) for job_id in ids])
        self._moved(None, "pending", len(ids))
        if self._queue_depth is not None:
            self._queue_depth.update((row[2], row[3]) for row in rows)  # (queue, priority) of each new job
        return ids

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
        rows = self.conn.execute("SELECT at, status, attempt, node, reason FROM history WHERE job_id = ?"
                                 " ORDER BY rowid", (job_id,))
        return [dict(row) for row in rows]

    def job_attempts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))
        return [dict(row) for row in rows]

    def list_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("status", status), ("queue", queue), ("node", node), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [_job(row) for row in rows]

    def pending_candidates(self, now: float, limit: int,
                           aged_before: float | None = None) -> Generator[dict[str, Any], None, None]:
        """Pending jobs in dispatch order whose backoff has passed, read lazily (stop when slots are full).

        With `aged_before` (aging), jobs created before it come first, oldest first. `INDEXED BY` pins the
        index that matches the ORDER BY: left alone the planner may pick the status index and sort in a
        temporary B-tree, 5x slower (research/zmq-perf.md §6). Consume the rows before writing on this
        connection.
        """
        queries: list[tuple[str, tuple[float, ...]]] = []
        if aged_before is not None:
            queries.append((f"SELECT {CANDIDATE_COLUMNS} FROM jobs INDEXED BY jobs_by_status"
                            " WHERE status = 'pending' AND not_before <= ?"
                            " AND created_at < ? ORDER BY seq LIMIT ?", (now, aged_before, limit)))
        queries.append((f"SELECT {CANDIDATE_COLUMNS} FROM jobs INDEXED BY jobs_dispatch"
                        " WHERE status = 'pending' AND not_before <= ?"
                        " ORDER BY weight DESC, seq LIMIT ?", (now, limit)))
        seen: set[str] = set()
        for sql, args in queries:
            rows = self.conn.execute(sql, args)
            try:
                for row in rows:
                    if len(queries) == 1 or row["id"] not in seen:
                        seen.add(row["id"])
                        yield _job_light(row)
            finally:
                rows.close()

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
            " RETURNING attempts, scenario, engine, queue, priority, params, labels, timeout, tenant",
            (node, job_id)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} is not pending")
        attempt = int(row["attempts"])
        self._moved("pending", "assigned", lane=(row["queue"], row["priority"]))
        self.conn.execute("INSERT INTO attempts (job_id, attempt, node, status, assigned_at) VALUES (?,?,?,?,?)",
                          (job_id, attempt, node, "assigned", now))
        self._history(job_id, now, "assigned", f"assigned to {node}", attempt, node)
        return {"attempt": attempt, "scenario": row["scenario"], "engine": row["engine"], "queue": row["queue"],
                "priority": row["priority"], "params": _loads(row["params"], {}),
                "labels": _loads(row["labels"], {}), "timeout": row["timeout"], "tenant": row["tenant"]}

    def assign_jobs(self, picks: list[tuple[dict[str, Any], str]], now: float) -> list[int]:
        """Many pending → assigned at once (dispatch): `picks` are candidate rows with their node.

        Returns each job's new attempt number. The rows come from this connection inside the same
        transaction, so their attempt counts are current; the WHERE clause checks it anyway.
        """
        attempts = [job["attempts"] + 1 for job, _ in picks]
        cur = self.conn.executemany(
            "UPDATE jobs SET status = 'assigned', attempts = ?, node = ?, reason = NULL, progress = NULL"
            " WHERE id = ? AND attempts = ? AND status = 'pending'",
            [(attempt, node, job["id"], job["attempts"]) for (job, node), attempt in zip(picks, attempts, strict=True)])
        if cur.rowcount != len(picks):
            raise NotFound("a job to dispatch was no longer pending")
        for job, _ in picks:
            self._moved("pending", "assigned", lane=(job["queue"], job["priority"]))
        self.conn.executemany("INSERT INTO attempts (job_id, attempt, node, status, assigned_at) VALUES (?,?,?,?,?)",
                              [(job["id"], attempt, node, "assigned", now)
                               for (job, node), attempt in zip(picks, attempts, strict=True)])
        self.conn.executemany("INSERT INTO history (job_id, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                              [(job["id"], now, "assigned", attempt, node, f"assigned to {node}")
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
        self.conn.execute("UPDATE attempts SET status = 'running', started_at = ? WHERE job_id = ? AND attempt = ?",
                          (started_at, job_id, attempt))
        self._history(job_id, started_at, "running", f"running on {row['node']}", attempt, row["node"])
        return _job(row)

    def record_progress(self, job_id: str, attempt: int, progress: float | None, metrics: dict[str, Any]) -> bool:
        cur = self.conn.execute(
            "UPDATE jobs SET progress = ?, metrics = ? WHERE id = ? AND attempts = ?"
            " AND status IN ('assigned','running')",
            (progress, _dumps(metrics), job_id, attempt))
        return cur.rowcount == 1

    def finish_job(self, job_id: str, attempt: int, status: str, now: float, *, error: str | None = None,
                   failure: str | None = None, metrics: dict[str, Any] | None = None,
                   output: str | None = None, started_at: float | None = None) -> dict[str, Any] | None:
        """Record the end of the current attempt as the end of the job, exactly once; returns the job.

        None when the attempt is stale or the job already ended (a late or repeated result changes nothing).
        `started_at`: the attempt's start, when no STARTED came before this result (recorded as well).
        """
        before = self.conn.execute("SELECT status FROM jobs WHERE id = ? AND attempts = ?", (job_id, attempt)
                                   ).fetchone()
        if before is None or before[0] not in ACTIVE:
            return None
        progress = 1.0 if status == "completed" else None
        began = now if started_at is None else min(started_at, now)
        row = self.conn.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, error = ?, failure = ?, metrics = ?, output = ?,"
            " progress = coalesce(?, progress), started_at = coalesce(started_at, ?)"
            " WHERE id = ? AND attempts = ? AND status = ? RETURNING *",
            (status, now, error, failure, _dumps(metrics or {}), output, progress, began, job_id, attempt, before[0])
        ).fetchone()
        self._moved(before[0], status)
        self.conn.execute("UPDATE attempts SET status = ?, started_at = coalesce(started_at, ?), finished_at = ?,"
                          " error = ?, failure = ? WHERE job_id = ? AND attempt = ?",
                          (status, began, now, error, failure, job_id, attempt))
        node = row["node"]
        events = [(job_id, now, status, attempt, node, "completed" if status == "completed" else (error or status))]
        if started_at is not None and before[0] == "assigned":
            events.insert(0, (job_id, began, "running", attempt, node, f"running on {node}"))
        self.conn.executemany("INSERT INTO history (job_id, at, status, attempt, node, reason) VALUES (?,?,?,?,?,?)",
                              events)
        return _job(row)

    def requeue_job(self, job_id: str, attempt: int, now: float, *, failure: str, error: str | None,
                    not_before: float, avoid: str | None = None, free: bool = False) -> bool:
        """The current attempt failed in a retryable way: back to pending after `not_before`.

        `free`: the attempt does not count against the job's retries (the worker turned it down).
        """
        row = self.conn.execute("SELECT avoid, status, queue, priority FROM jobs WHERE id = ? AND attempts = ?"
                                " AND status IN ('assigned','running')", (job_id, attempt)).fetchone()
        if row is None:
            return False
        self._moved(row["status"], "pending", lane=(row["queue"], row["priority"]))
        nodes = _loads(row[0], [])
        if avoid and avoid not in nodes:
            nodes.append(avoid)
        self.conn.execute(
            "UPDATE jobs SET status = 'pending', node = NULL, progress = NULL, not_before = ?, error = ?,"
            " failure = ?, avoid = ?, max_retries = max_retries + ? WHERE id = ?",
            (not_before, error, failure, _dumps(nodes), int(free), job_id))
        self._end_attempt(job_id, attempt, "failed", now, error, failure)
        wait = f", retry in {not_before - now:.0f}s" if not_before > now + 0.5 else ""
        self._history(job_id, now, "pending", f"{failure}: {error or 'attempt ended'}{wait}", attempt, avoid)
        return True

    def readopt_job(self, job_id: str, attempt: int, node: str, now: float) -> bool:
        """A requeued job whose attempt turns out to be still running on `node` → running again, same attempt."""
        cur = self.conn.execute(
            "UPDATE jobs SET status = 'running', node = ?, not_before = 0, error = NULL, failure = NULL"
            " WHERE id = ? AND attempts = ? AND status = 'pending' RETURNING queue, priority", (node, job_id, attempt))
        adopted = cur.fetchone()
        if adopted is None:
            return False
        self._moved("pending", "running", lane=(adopted[0], adopted[1]))
        self.conn.execute("UPDATE attempts SET status = 'running', finished_at = NULL, error = NULL, failure = NULL"
                          " WHERE job_id = ? AND attempt = ?", (job_id, attempt))
        self._history(job_id, now, "running", f"adopted back: {node} still runs it", attempt, node)
        return True

    def _end_attempt(self, job_id: str, attempt: int, status: str, now: float, error: str | None,
                     failure: str | None) -> None:
        self.conn.execute("UPDATE attempts SET status = ?, finished_at = ?, error = ?, failure = ?"
                          " WHERE job_id = ? AND attempt = ?", (status, now, error, failure, job_id, attempt))

    def cancel_job(self, job_id: str, now: float, reason: str = "canceled by user") -> dict[str, Any] | None:
        """Any unfinished job → canceled. Returns the job as it was, or None when it had already ended."""
        job = self.get_job(job_id)
        if job is None or job["status"] in TERMINAL:
            return None
        self.conn.execute("UPDATE jobs SET status = 'canceled', finished_at = ?, error = ?, failure = 'canceled'"
                          " WHERE id = ?", (now, reason, job_id))
        self._moved(job["status"], "canceled", lane=(job["queue"], job["priority"]))
        if job["status"] in ACTIVE:
            self._end_attempt(job_id, job["attempts"], "canceled", now, reason, "canceled")
        self._history(job_id, now, "canceled", reason, job["attempts"] or None, job["node"])
        return job

    def retry_job(self, job_id: str, now: float) -> bool:
        """A failed or canceled job → pending again, with its retry budget renewed."""
        before = self.conn.execute("SELECT status, queue, priority FROM jobs WHERE id = ?", (job_id,)).fetchone()
        cur = self.conn.execute(
            "UPDATE jobs SET status = 'pending', not_before = 0, finished_at = NULL, error = NULL, failure = NULL,"
            " node = NULL, progress = NULL, max_retries = max_retries + attempts WHERE id = ?"
            " AND status IN ('failed','canceled')", (job_id,))
        if cur.rowcount != 1:
            return False
        self._moved(before[0], "pending", lane=(before[1], before[2]))
        self._history(job_id, now, "pending", "retried by hand")
        return True

    def set_wait_reason(self, job_id: str, reason: str | None) -> None:
        self.conn.execute("UPDATE jobs SET reason = ? WHERE id = ? AND status = 'pending'", (reason, job_id))

    def active_attempts(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT a.job_id, a.attempt, a.node, a.status, a.assigned_at, j.queue, j.timeout, j.params, j.tenant"
            " FROM attempts a JOIN jobs j"
            " ON j.id = a.job_id AND j.attempts = a.attempt WHERE a.status IN ('assigned','running')"
            " AND j.status IN ('assigned','running')")
        return [{**dict(row), "params": _loads(row["params"], {})} for row in rows]

    # ---- logs -----------------------------------------------------------------------------------------

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

    def total_log_bytes(self) -> int:
        return int(self.conn.execute("SELECT coalesce(sum(log_bytes), 0) FROM jobs").fetchone()[0])

    def jobs_with_old_logs(self, finished_before: float | None, limit: int) -> list[tuple[str, int]]:
        """(job id, log bytes) of finished jobs that still hold logs, oldest first; before a time when given."""
        sql = ("SELECT id, log_bytes FROM jobs INDEXED BY jobs_with_logs WHERE log_bytes > 0"
               " AND finished_at IS NOT NULL")
        args: tuple[Any, ...] = (limit,)
        if finished_before is not None:
            sql += " AND finished_at < ?"
            args = (finished_before, limit)
        rows = self.conn.execute(sql + " ORDER BY finished_at LIMIT ?", args)
        return [(row[0], int(row[1])) for row in rows]

    def delete_logs(self, job_ids: list[str]) -> None:
        marks = ",".join("?" * len(job_ids))
        self.conn.execute(f"DELETE FROM logs WHERE job_id IN ({marks})", job_ids)
        self.conn.execute(f"UPDATE jobs SET log_bytes = 0 WHERE id IN ({marks})", job_ids)

    def job_logs(self, job_id: str, attempt: int | None = None, tail: int | None = None,
                 min_attempt: int | None = None) -> list[dict[str, Any]]:
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
        return [dict(row) for row in self.conn.execute(sql, args)]

    # ---- nodes ----------------------------------------------------------------------------------------

    def upsert_node(self, node: dict[str, Any], now: float) -> None:
        self.conn.execute(
            "INSERT INTO nodes (name, fingerprint, status, version, slots, engines, encoders, labels, resources,"
            " first_seen, last_seen, curve_key) VALUES (:name, :fingerprint, :status, :version, :slots, :engines,"
            " :encoders, :labels, :resources, :now, :now, :curve_key)"
            " ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " status = excluded.status, version = excluded.version, slots = excluded.slots,"
            " engines = excluded.engines, encoders = excluded.encoders, labels = excluded.labels,"
            " resources = excluded.resources, last_seen = excluded.last_seen, curve_key = excluded.curve_key",
            {**{k: node.get(k) for k in ("name", "fingerprint", "status", "version", "slots", "curve_key")},
             "engines": _dumps(node.get("engines", [])), "encoders": _dumps(node.get("encoders", {})),
             "labels": _dumps(node.get("labels", {})), "resources": _dumps(node.get("resources", {})), "now": now})

    def update_node(self, name: str, *, status: str | None = None, last_seen: float | None = None,
                    resources: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            "UPDATE nodes SET status = coalesce(?, status), last_seen = coalesce(?, last_seen),"
            " resources = coalesce(?, resources) WHERE name = ?",
            (status, last_seen, _dumps(resources) if resources is not None else None, name))

    def list_nodes(self) -> list[dict[str, Any]]:
        return [_node(row) for row in self.conn.execute("SELECT * FROM nodes ORDER BY name")]

    def get_node(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
        return _node(row) if row else None


def _job_light(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "engine": row["engine"], "queue": row["queue"], "params": _loads(row["params"], {}),
            "labels": _loads(row["labels"], {}), "avoid": _loads(row["avoid"], []), "reason": row["reason"],
            "attempts": row["attempts"], "tenant": row["tenant"], "scenario": row["scenario"],
            "priority": row["priority"], "timeout": row["timeout"]}


def _node(row: sqlite3.Row) -> dict[str, Any]:
    node = dict(row)
    for key, default in (("engines", []), ("encoders", {}), ("labels", {}), ("resources", {})):
        node[key] = _loads(node[key], default)
    return node
