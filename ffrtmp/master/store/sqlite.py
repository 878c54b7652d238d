"""The master's durable state in SQLite (`SqliteStore`, the embedded backend of the `Store` interface).

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
from pathlib import Path
from typing import Any, cast

import sqlite_utils

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.jobspec import JobSpec
from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import (
    ACTIVE,
    TERMINAL,
    ActiveAttempt,
    AttemptRow,
    Ending,
    HistoryRow,
    JobRow,
    WriteFault,
)
from ffrtmp.master.store.dispatch import DispatchRows, needs_key
from ffrtmp.master.store.files import FileRows
from ffrtmp.master.store.health import is_write_fault
from ffrtmp.master.store.history import HistoryRows
from ffrtmp.master.store.keys import KeyRows
from ffrtmp.master.store.lease_sqlite import LeaseRows
from ffrtmp.master.store.logs import LogRows
from ffrtmp.master.store.nodes import NodeRows
from ffrtmp.master.store.reader import SqliteReader
from ffrtmp.master.store.report import ReportRows
from ffrtmp.master.store.savepoints import LazySavepointConnection
from ffrtmp.master.store.schema import MIGRATIONS
from ffrtmp.master.store.transitions import TransitionRows, job_from_row

__all__ = ["ACTIVE", "TERMINAL", "Ending", "SqliteStore"]
RECENT_SCAN = 200_000
"""History rows read back at start for the last hour's activity, at most (a bounded cost on a huge store)."""


class SqliteStore(TransitionRows, LogRows, NodeRows, DispatchRows, KeyRows, LeaseRows, HistoryRows,
                  FileRows, ReportRows):
    """The `Store` interface over one SQLite file in WAL mode (the master's only writer connection)."""

    conn: LazySavepointConnection

    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        """`migrate=False` (tools beside a running master): a store that needs migrating is refused, since
        only the master that will use the new schema may change it under itself."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0,
                                    factory=LazySavepointConnection)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a crash of the master process (kill -9); only power loss can drop the
        # last commits. Measured: 4x the commit rate of FULL (docs/design.md, "The store").
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

    @property
    def directory(self) -> str | None:
        return None if self.path == ":memory:" else str(Path(self.path).parent)

    def reader(self) -> SqliteReader:
        """Reads for another thread, on a read-only connection of their own (a WAL reader never blocks us)."""
        return SqliteReader(self.path)

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
                raise WriteFault(exc) from exc
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
        """Inside a transaction: undo only this block's writes when it raises. Issued lazily (savepoints.py):
        a block that writes nothing costs no statement."""
        self.conn.open_scope()
        try:
            yield
        except BaseException as exc:
            self._counts = self._queue_depth = None
            if is_write_fault(exc) or isinstance(exc, WriteFault):
                # The disk failed, not this block: the whole batch must go (SQLite may have ended it already).
                self.conn.scopes.pop()
                raise exc if isinstance(exc, WriteFault) else WriteFault(exc) from exc
            self.conn.close_scope(undo=True)
            raise
        self.conn.close_scope(undo=False)

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

    def get_job(self, job_id: str) -> JobRow | None:
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def job_history(self, job_id: str) -> list[HistoryRow]:
        rows = self.conn.execute("SELECT at, status, attempt, node, reason FROM history"
                                 " WHERE job_seq = (SELECT seq FROM jobs WHERE id = ?) ORDER BY rowid", (job_id,))
        return [cast(HistoryRow, dict(row)) for row in rows]

    def job_attempts(self, job_id: str) -> list[AttemptRow]:
        rows = self.conn.execute("SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, a.started_at,"
                                 " a.finished_at, a.error, a.failure FROM jobs j JOIN attempts a ON a.job_seq = j.seq"
                                 " WHERE j.id = ? ORDER BY a.attempt", (job_id,))
        return [cast(AttemptRow, dict(row)) for row in rows]

    def list_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None, before: int | None = None) -> list[JobRow]:
        """Newest first; with `before` (a cursor: the last page's smallest seq), the jobs older than it."""
        with closing(self.iter_jobs(status, queue, node, limit, tenant, before)) as rows:
            return list(rows)

    def iter_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None,
                  before: int | None = None) -> Generator[JobRow, None, None]:
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
                yield job_from_row(row)
        finally:
            rows.close()

    def pending_candidates(self, now: float, limit: int,
                           aged_before: float | None = None) -> Iterator[dict[str, Any]]:
        """Pending jobs in dispatch order whose backoff has passed, at most `limit`: the head of every lane
        (store/dispatch.py), merged in dispatch order with tenants taking turns (fairness.fair_order). With
        `aged_before` (aging), jobs created before it come first, oldest first. Dispatch itself reads only
        the lanes a free node can take (dispatch.read_candidates)."""
        from ffrtmp.master.fairness import fair_order

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

    def recent_endings(self, since: float, scan: int = RECENT_SCAN) -> list[tuple[float, str, str]]:
        """(time, status, tenant) of jobs completed or failed since `since`, from the newest `scan` history rows
        (history is appended in time order: this reads its tail, never the whole table)."""
        rows = self.conn.execute(
            "SELECT h.at, h.status, j.tenant FROM history h JOIN jobs j ON j.seq = h.job_seq"
            " WHERE h.rowid > (SELECT coalesce(max(rowid), 0) FROM history) - ? AND h.at >= ?"
            " AND h.status IN ('completed', 'failed')", (scan, since))
        return [(row[0], row[1], row[2]) for row in rows]

    def active_attempts(self) -> list[ActiveAttempt]:
        rows = self.conn.execute(
            "SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, j.queue, j.timeout, j.params, j.tenant"
            " FROM attempts a JOIN jobs j"
            " ON j.seq = a.job_seq AND j.attempts = a.attempt WHERE a.status IN ('assigned','running')"
            " AND j.status IN ('assigned','running')")
        return [cast(ActiveAttempt, {**dict(row), "params": from_json(row["params"], {})}) for row in rows]
