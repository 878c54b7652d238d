"""The PostgreSQL store's connection: transactions, savepoints, fencing, and faults mapped to the store's errors.

A lost connection, a full disk or a read-only server is an operational fault, never a traceback:
inside a transaction it ends the batch as `WriteFault` (the coordinator's degraded mode, as for SQLite's
full disk); outside one it is `StoreUnavailable`. The next call after the server is back reconnects.
Statements the server refuses for what they say (a constraint, a bad query) are raised as they are.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.pq import TransactionStatus

from ffrtmp.errors import InvalidInput, StoreUnavailable
from ffrtmp.master.store.health import WriteFault

if TYPE_CHECKING:
    from ffrtmp.master.store.api import Quota

PENDING, ISSUED, IMPLIED = "pending", "issued", "implied"
"""A savepoint scope's states (`Session.savepoint`)."""

FENCE = "SELECT 1 FROM leader_lease WHERE holder = %s AND term = %s AND expires_at > clock_timestamp() FOR SHARE"
"""The check every write transaction of a fenced master makes first (`Session.fenced`)."""

CONNECT_TIMEOUT = 5
IDLE_IN_TRANSACTION = "60s"
"""A session left inside a transaction holds back vacuum (dead claims pile up in the hot table): end it."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Row(dict[str, Any]):
    """A row by column name or by position, as `sqlite3.Row` (the store's callers use both)."""

    __slots__ = ()

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return dict.__getitem__(self, key)


def row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Row]:
    names = [column.name for column in cursor.description or ()]
    return lambda values: Row(zip(names, values, strict=True))


FAULTS = (psycopg.OperationalError, psycopg.InterfaceError, pgerrors.ReadOnlySqlTransaction, pgerrors.DiskFull,
          pgerrors.InsufficientResources)
"""What the server or the link caused (lost connection, shutdown, full disk, a read-only standby)."""


def is_fault(exc: psycopg.Error, conn: psycopg.Connection[Any] | None) -> bool:
    """True when the server or the link failed, not the statement."""
    return (conn is None or conn.closed or conn.broken
            or isinstance(exc, FAULTS))


class ServerFault(Exception):
    """Why a write met a lost or refusing server, in one line that names it (degraded mode shows it)."""


class SqliteStyle:
    """`store.conn.execute(sql, args)` with SQLite's `?` placeholders, for the callers still written against
    SQLite's connection (API keys, tenants): their statements are standard SQL otherwise."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        return self.session.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(args))


class Session:
    """One connection to the store's database, reopened on demand after a fault."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)
        self._conn: psycopg.Connection[Row] | None = None
        self._depth = 0
        self._begun = False
        """BEGIN went through: a lost connection cannot be replaced until the transaction ends."""
        self._counts: Counter[str] | None = None
        """Jobs per status, kept by every transition (as in the SQLite store); None after a rollback."""
        self._queue_depth: Counter[tuple[str, str]] | None = None
        self.on_commit: Callable[[float], None] | None = None
        self.fenced: tuple[str, int] | None = None
        """(name, term) every write transaction checks first (`fence`); None: no fencing."""
        self.on_fence_lost: Callable[[], Exception] | None = None
        self.connect_error = ""
        """Why the last connection attempt failed (for the first connection's message)."""
        self._scopes: list[str] = []
        """The savepoints opened and not yet released, innermost last: PENDING until the block's first statement,
        then ISSUED (SAVEPOINT went out) or, for a block that opens a fresh transaction, IMPLIED."""
        self._fresh = False
        """Inside a transaction that has sent nothing since BEGIN and the fence check: undoing a block that
        begins here is undoing the transaction, so the block needs no SAVEPOINT of its own."""
        self._doomed: Exception | None = None
        """Why this transaction may no longer commit (its lease was lost when a block was undone): raised again by
        every statement and at COMMIT, so no handler that survives a message's error can write on."""
        self._inserted_jobs = 0
        """Jobs inserted by this transaction (what the store counts toward a burst once it commits)."""
        self._quotas: dict[str, Quota] | None = None
        """The tenants' quotas as this transaction read them (a submit and its dispatch pass both need them)."""
        self.savepoints_opened = 0
        self.savepoints_issued = 0
        """Savepoints asked for, and SAVEPOINT statements sent, so far (what tests and benchmarks count)."""

    # ---- the connection ----------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Row]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._begun:
            raise self.fault(psycopg.OperationalError("the connection was lost inside a transaction"))
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=row_factory, connect_timeout=CONNECT_TIMEOUT,
                                   keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
            conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
        except psycopg.Error as exc:
            self.connect_error = first_line(exc)
            raise self.fault(exc) from None
        self._conn = conn
        return conn

    def open_or_refuse(self) -> psycopg.Connection[Row]:
        """The first connection: a URL that leads nowhere is the user's to fix (InvalidInput, exit 2)."""
        try:
            return self.connect()
        except (StoreUnavailable, WriteFault):
            raise InvalidInput("db", f"{self.shown}: cannot connect ({self.connect_error}): check that PostgreSQL "
                               "runs there and the URL's user, host, port and database") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def fault(self, exc: psycopg.Error) -> Exception:
        """What a fault raises: inside a transaction the batch ends (WriteFault), outside it a retry later."""
        if self._depth:
            self._counts = self._queue_depth = None
            return WriteFault(ServerFault(f"PostgreSQL at {self.shown}: {first_line(exc)}"))
        return StoreUnavailable(f"store unavailable: PostgreSQL at {self.shown}: {first_line(exc)}; nothing was "
                                "stored, retry later")

    def execute(self, sql: Any, args: Sequence[Any] | Mapping[str, Any] | None = None) -> psycopg.Cursor[Row]:
        if self._doomed is not None:
            # Its traceback cleared: raised again for every message of a long batch, it would grow each time
            # (and each handler logs it).
            raise self._doomed.with_traceback(None)
        if self._scopes and self._scopes[-1] == PENDING:
            self._issue_savepoints()
        self._fresh = False
        conn = self.connect()
        try:
            return conn.execute(sql, args)
        except psycopg.Error as exc:
            if not is_fault(exc, conn):
                raise
            raise self.fault(exc) from None

    def one(self, sql: Any, args: Sequence[Any] | Mapping[str, Any] | None = None) -> Row | None:
        return self.execute(sql, args).fetchone()

    def all(self, sql: Any, args: Sequence[Any] | Mapping[str, Any] | None = None) -> list[Row]:
        return self.execute(sql, args).fetchall()

    # ---- transactions ------------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one. Fenced: it first checks the lease."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1  # from here on a fault ends the batch (WriteFault), BEGIN's own included
        try:
            try:
                self.execute("BEGIN")
            except WriteFault:
                # The connection died while idle (a killed backend, a restarted server): nothing was done
                # yet, so a fresh connection may begin the transaction instead.
                self.close()
                self.execute("BEGIN")
        except BaseException:
            self._depth = 0
            raise
        self._begun = True
        try:
            if not self._fence_held():
                raise self._fence_lost()
            self._fresh = True
            yield
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        if self._conn is not None and self._conn.info.transaction_status == TransactionStatus.INERROR:
            # A statement failed and its error was caught on the way: PostgreSQL would answer COMMIT with a
            # silent rollback, so the batch cannot be reported as stored.
            self._depth = 0
            self._rollback()
            raise WriteFault(psycopg.OperationalError("the transaction was aborted by an error inside it"))
        if self._doomed is not None:
            doomed, self._depth = self._doomed, 0
            self._rollback()
            raise doomed.with_traceback(None)
        began = time.perf_counter()
        try:
            # A connection lost during COMMIT leaves its outcome unknown: reported as not stored, the batch's
            # requests are retried (submits carry idempotency keys, attempt writes are fenced by attempt).
            self.execute("COMMIT")
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._begun = False
        self._quotas = None
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)
        self._after_commit()

    def _after_commit(self) -> None:
        """What a part of the store does once a transaction is committed (nothing here)."""

    def _fence_held(self) -> bool:
        """Whether the lease is still ours (always, unfenced). The check takes the lease row FOR SHARE: a
        takeover's UPDATE of it waits until this transaction ends, so no other master can become leader
        while this write is in flight."""
        return self.fenced is None or self.one(FENCE, self.fenced) is not None

    def _fence_lost(self) -> Exception:
        return self.on_fence_lost() if self.on_fence_lost is not None else RuntimeError("lease lost")

    def _rollback(self) -> None:
        self._begun = False
        self._fresh = False
        self._doomed = None
        self._inserted_jobs = 0
        self._counts = self._queue_depth = self._quotas = None
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return  # the server dropped the transaction with the connection
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()  # a connection that cannot roll back is not reused: the next call reconnects

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises.

        Lazy: SAVEPOINT goes out just before the block's first statement, so a block that sends none (most
        messages of a batch: results and heartbeats are written once per frame, outside them) costs no round
        trip, where an eager one cost two (SAVEPOINT, RELEASE) per message: 69-92 % of the statements of a
        null-job run (scripts/bench/compare_pg.py). Before any statement, not only writes: a statement that
        fails aborts a PostgreSQL transaction, and only a savepoint taken before it lets the batch go on.
        And none at all for a block whose first statement is the transaction's first after the fence check
        (a lone submit, a batch's first writer): undoing it is a ROLLBACK and a fresh BEGIN and fence, paid
        only when it fails, where the savepoint cost two round trips every time.
        """
        self._scopes.append(PENDING)
        self.savepoints_opened += 1
        try:
            yield
        except BaseException as exc:
            scope = self._scopes.pop()
            if scope == PENDING or isinstance(exc, WriteFault):
                raise  # nothing of its own to undo, or the server or the link failed: the whole batch must go
            self._counts = self._queue_depth = self._quotas = None
            if scope == IMPLIED:
                self._restart()
            else:
                self.execute("ROLLBACK TO SAVEPOINT message")
                self.execute("RELEASE SAVEPOINT message")
            raise
        if self._scopes.pop() == ISSUED:
            self.execute("RELEASE SAVEPOINT message")

    def _issue_savepoints(self) -> None:
        """SAVEPOINT for each open scope not yet sent, outermost first (an inner block's statement is also its
        outer block's); the outermost needs none in a fresh transaction."""
        for depth, scope in enumerate(self._scopes):
            if scope != PENDING:
                continue
            if depth == 0 and self._fresh:
                self._scopes[depth] = IMPLIED
                continue
            self._scopes[depth] = ISSUED  # first: execute() below must not issue it again
            self.savepoints_issued += 1
            self.execute("SAVEPOINT message")

    def _restart(self) -> None:
        """Undo everything since BEGIN (only the fence check came before the failed block) and begin again, as
        ROLLBACK TO SAVEPOINT would have left it. A lease lost meanwhile raises, as at any BEGIN."""
        self.execute("ROLLBACK")
        self.execute("BEGIN")
        if not self._fence_held():
            self._doomed = self._fence_lost()
            raise self._doomed
        self._fresh = True

    # ---- reads a transaction repeats ----------------------------------------------------------------

    def tenant_quotas(self, read: Callable[[], dict[str, Quota]]) -> dict[str, Quota]:
        """`read()`, once per transaction (outside one, every time)."""
        if not self._depth:
            return read()
        if self._quotas is None:
            self._quotas = read()
        return self._quotas

    def quotas_changed(self) -> None:
        self._quotas = None
