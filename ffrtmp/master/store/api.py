"""The one interface the master uses for its durable state: typed rows, the store's errors, and `Store`.

Every backend (SQLite, the embedded default; PostgreSQL) implements `Store`. Rows are `TypedDict`s, so they
are plain dicts at run time (`row["status"]` works, JSON encoding works) and mypy still checks the keys.
Faults of the store itself (its disk, its connection) are `StoreError`s; faults of a request stay the
user-facing errors of `ffrtmp.errors` (`NotFound`, exit 6; `InvalidInput`, exit 2), whatever the backend.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from ffrtmp.errors import StoreUnavailable
from ffrtmp.jobspec import JobSpec
from ffrtmp.master.store.files import FileRef, FileRow, JobFiles
from ffrtmp.master.store.history import MeasuredJob
from ffrtmp.master.store.leases import Leadership
from ffrtmp.master.store.report import CurvePoint, ReportRow

ACTIVE = ("assigned", "running")
TERMINAL = ("completed", "failed", "canceled")


# ---- errors -------------------------------------------------------------------------------------------


class StoreError(Exception):
    """A fault of the store itself (its database, disk or connection), never of the request that met it.

    Not an `FfrtmpError`: no request handler may mistake it for a refused request. The master turns it into
    degraded mode (`WriteFault`) or a logged, left-out reading (`StoreUnreachable`); clients then get
    `ffrtmp.errors.StoreUnavailable` (507, exit 5).
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class WriteFault(StoreError):
    """A write failed because of the disk (full, I/O error, read-only); the transaction was rolled back."""


class StoreUnreachable(StoreError):
    """The store could not be read now (a lost connection, a damaged or missing database)."""


STORE_ERRORS: tuple[type[Exception], ...] = (StoreError, StoreUnavailable, sqlite3.Error)
"""What a read of the store raises when the store itself is at fault: `StoreError`; `StoreUnavailable`, a
PostgreSQL server lost outside a transaction (its one line names the server: the backend turns every
psycopg error of a lost link or server into it or `WriteFault`); or SQLite's own errors, left as they are so
that its write-fault detection sees the error codes."""


# ---- rows ---------------------------------------------------------------------------------------------


class JobRow(TypedDict, total=False):
    """A job as stored. Reads that need less (dispatch lanes, endings) return a subset of these keys."""

    seq: int
    id: str
    status: str
    scenario: str
    queue: str
    priority: str
    weight: int
    engine: str
    params: dict[str, Any]
    labels: dict[str, str]
    tenant: str
    max_retries: int
    timeout: float | None
    attempts: int
    node: str | None
    progress: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float
    error: str | None
    failure: str | None
    output: str | None
    metrics: dict[str, Any]
    avoid: list[str]
    reason: str | None
    needs: str
    log_bytes: int
    log_dropped: int


class Assignment(TypedDict):
    """What `assign_job` returns: the worker's part of the job, with the new fencing token `attempt`."""

    attempt: int
    scenario: str
    engine: str
    queue: str
    priority: str
    params: dict[str, Any]
    labels: dict[str, str]
    timeout: float | None
    tenant: str


class HistoryRow(TypedDict):
    at: float
    status: str
    attempt: int | None
    node: str | None
    reason: str | None


class AttemptRow(TypedDict):
    job_id: str
    attempt: int
    node: str
    status: str
    assigned_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    failure: str | None


class ActiveAttempt(TypedDict):
    """An attempt the store calls active (assigned or running, and its job's current one)."""

    job_id: str
    attempt: int
    node: str
    status: str
    assigned_at: float
    queue: str
    timeout: float | None
    params: dict[str, Any]
    tenant: str


class NodeRow(TypedDict, total=False):
    name: str
    fingerprint: str
    status: str
    version: str
    slots: int
    engines: list[str]
    encoders: dict[str, Any]
    labels: dict[str, str]
    resources: dict[str, Any]
    first_seen: float
    last_seen: float
    curve_key: str | None
    api_key: str | None


class LogLine(TypedDict):
    attempt: int
    seq: int
    at: float
    stream: str
    line: str


class ApiKeyRow(TypedDict, total=False):
    """An API key as stored: never the key itself, only its SHA-256 (`hash`, read by `find_api_key` only)."""

    id: str
    hash: str
    role: str
    tenant: str
    node: str | None
    note: str
    created_at: float
    revoked_at: float | None


class Quota(TypedDict):
    max_pending: int | None
    max_running: int | None


class TenantLanes(TypedDict, total=False):
    """The queues and priorities granted to one tenant; a key is present only when a list was set."""

    queues: list[str]
    priorities: list[str]


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


Lane = tuple[str, str, int]
"""A dispatch lane: (needs, tenant, weight)."""


class StoreReader(Protocol):
    """Reads for another thread (the metrics endpoint), on a connection of their own: never the master's."""

    def job_counts(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """Jobs per status and pending jobs per (queue, priority), read in one snapshot (so they add up).
        Raises `StoreUnreachable`."""
        ...

    def ping(self) -> None:
        """Return when the store answers a read; raise `StoreUnreachable` otherwise."""
        ...

    def close(self) -> None: ...


class Store(Leadership, Protocol):
    """The master's durable state, as verb-named operations. Writes run inside `transaction()`."""

    on_commit: Callable[[float], None] | None
    """Told how long each COMMIT took (metrics)."""
    path: str
    """What logs and messages show for the store: the SQLite file, or the PostgreSQL URL without its password."""

    @property
    def directory(self) -> str | None:
        """The local directory whose disk holds the store (watched for free space), or None (no local disk)."""
        ...

    # lifecycle and transactions
    def check_writable(self) -> None: ...
    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def savepoint(self) -> AbstractContextManager[None]: ...
    def reader(self) -> StoreReader: ...

    # jobs
    def insert_jobs(self, specs: Iterable[JobSpec], now: float, default_max_retries: int,
                    tenant: str = "") -> list[str]: ...
    def submitted_ids(self, tenant: str, key: str) -> list[str] | None: ...
    def remember_submit(self, tenant: str, key: str, ids: list[str], now: float) -> None: ...
    def forget_submit_keys(self, before: float) -> int: ...
    def resolve_job_id(self, prefix: str, tenant: str | None = None) -> str: ...
    def get_job(self, job_id: str) -> JobRow | None: ...
    def job_history(self, job_id: str) -> list[HistoryRow]: ...
    def job_attempts(self, job_id: str) -> list[AttemptRow]: ...
    def list_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None, before: int | None = None) -> list[JobRow]: ...
    def iter_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None,
                  before: int | None = None) -> Generator[JobRow, None, None]: ...
    def pending_candidates(self, now: float, limit: int,
                           aged_before: float | None = None) -> Iterator[dict[str, Any]]: ...
    def pending_by_engine(self) -> dict[str, int]: ...
    def status_counts(self, tenant: str | None = None) -> dict[str, int]: ...
    def tenant_pending(self, tenant: str) -> int: ...
    def pending_by_queue(self, tenant: str | None = None) -> dict[str, dict[str, int]]: ...
    def assign_job(self, job_id: str, node: str, now: float) -> Assignment: ...
    def assign_jobs(self, picks: list[tuple[dict[str, Any], str]], now: float) -> list[int]: ...
    def mark_running(self, job_id: str, attempt: int, started_at: float) -> JobRow | None: ...
    def record_progress(self, job_id: str, attempt: int, progress: float | None, metrics: dict[str, Any]) -> bool: ...
    def finish_job(self, job_id: str, attempt: int, status: str, now: float, *, error: str | None = None,
                   failure: str | None = None, metrics: dict[str, Any] | None = None,
                   output: str | None = None, started_at: float | None = None) -> JobRow | None: ...
    def finish_jobs(self, endings: list[Ending]) -> list[JobRow | None]: ...
    def requeue_job(self, job_id: str, attempt: int, now: float, *, failure: str, error: str | None,
                    not_before: float, avoid: str | None = None, free: bool = False) -> bool: ...
    def readopt_job(self, job_id: str, attempt: int, node: str, now: float) -> bool: ...
    def cancel_job(self, job_id: str, now: float, reason: str = "canceled by user") -> JobRow | None: ...
    def retry_job(self, job_id: str, now: float) -> bool: ...
    def set_wait_reason(self, job_id: str, reason: str | None) -> None: ...
    def recent_endings(self, since: float, scan: int = ...) -> list[tuple[float, str, str]]: ...
    def active_attempts(self) -> list[ActiveAttempt]: ...

    # dispatch lanes: their rows are the scheduler's working dicts (JobRow's keys; placement adds its own)
    def pending_lanes(self, skip: Callable[[str], bool]) -> Iterator[Lane]: ...
    def lane_head(self, lane: Lane, now: float, limit: int) -> list[dict[str, Any]]: ...
    def set_needs_reason(self, needs: str, reason: str, above: int, upto: int) -> int: ...
    def pending_of_engine(self, engine: str, cap: int) -> int: ...
    def pending_seqs(self) -> tuple[int, int]: ...

    # logs
    def append_logs(self, job_id: str, attempt: int, lines: list[tuple[int, float, str, str]],
                    dropped: int = 0) -> None: ...
    def log_size(self, job_id: str) -> tuple[int, int]: ...
    def log_owner(self, job_id: str) -> tuple[int, int, str]: ...
    def max_log_seq(self, job_id: str, attempt: int) -> int | None: ...
    def log_bytes_by_tenant(self) -> dict[str, int]: ...
    def total_log_bytes(self) -> int: ...
    def jobs_with_old_logs(self, finished_before: float | None, limit: int,
                           tenant: str | None = None) -> list[tuple[str, int, str]]: ...
    def delete_logs(self, job_ids: list[str]) -> None: ...
    def job_logs(self, job_id: str, attempt: int | None = None, tail: int | None = None,
                 min_attempt: int | None = None) -> list[LogLine]: ...

    # nodes
    def upsert_node(self, node: dict[str, Any], now: float) -> None: ...
    def update_node(self, name: str, *, status: str | None = None, last_seen: float | None = None,
                    resources: dict[str, Any] | None = None) -> None: ...
    def offline_nodes(self, before: float) -> list[str]: ...
    def forget_node(self, name: str) -> bool: ...
    def attempt_node(self, job_id: str, attempt: int) -> str | None: ...
    def list_nodes(self) -> list[NodeRow]: ...
    def get_node(self, name: str) -> NodeRow | None: ...

    # API keys and tenants
    def insert_api_key(self, key: ApiKeyRow) -> None: ...
    def find_api_key(self, key_id: str) -> ApiKeyRow | None: ...
    def list_api_keys(self) -> list[ApiKeyRow]: ...
    def revoke_api_key(self, key_id: str, now: float) -> bool: ...
    def had_api_keys(self) -> bool: ...
    def set_quota(self, tenant: str, max_pending: int | None, max_running: int | None) -> None: ...
    def quotas(self) -> dict[str, Quota]: ...
    def set_lanes(self, tenant: str, queues: tuple[str, ...] | None, priorities: tuple[str, ...] | None) -> None: ...
    def granted_lanes(self) -> dict[str, TenantLanes]: ...

    # measured history (history.py): completed jobs with a quality metric, for `ffrtmp recommend`
    def measured_jobs(self, resolution: str, fps: int, metric: str, *, codec: str | None = None,
                      tenant: str | None = None, limit: int = ...) -> list[MeasuredJob]: ...
    # stored files (docs/files.md): who holds which object, a job's input and its attempts' outputs
    def put_file(self, tenant: str, sha256: str, size: int, name: str, now: float) -> None: ...
    def find_file(self, tenant: str, sha256: str) -> FileRow | None: ...
    def touch_file(self, tenant: str, sha256: str, now: float) -> bool: ...
    def tenant_file_bytes(self, tenant: str) -> int: ...
    def set_bytes_quota(self, tenant: str, max_bytes: int | None) -> None: ...
    def bytes_quota(self, tenant: str) -> int | None: ...
    def link_job_file(self, job_id: str, role: str, attempt: int, tenant: str, ref: FileRef,
                      now: float) -> None: ...
    def job_file(self, job_id: str, role: str, attempt: int) -> FileRef | None: ...
    def job_files(self, job_id: str) -> JobFiles: ...
    def stale_files(self, before: float, limit: int) -> list[tuple[str, str]]: ...
    def delete_file(self, tenant: str, sha256: str) -> bool: ...
    # quality and cost reports of completed jobs, aggregated in the database (report.py)
    def job_report(self, by: str, *, since: float | None = None, group: str | None = None,
                   tenant: str | None = None) -> list[ReportRow]: ...
    def rate_quality(self, *, since: float | None = None, group: str | None = None,
                     tenant: str | None = None) -> list[CurvePoint]: ...
