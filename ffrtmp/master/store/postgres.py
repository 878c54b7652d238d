"""The master's store on PostgreSQL (`--db postgresql://USER@HOST:PORT/DBNAME`, extra `ffrtmp[postgres]`).

The whole `Store` interface (api.py) with the same results as `SqliteStore`, so the coordinator cannot tell
them apart, plus `Leadership` (leases.py) for several masters on one database. Only a master migrates the schema
(`migrate=True`); tools beside it (`ffrtmp keys`) refuse a database that is not migrated yet.

Split by concept: postgres_session.py (connection, transactions, faults, fencing), postgres_schema.py
(migrations), postgres_jobs.py (submits, reads, lanes), postgres_lifecycle.py (transitions),
postgres_rows.py (logs, nodes), postgres_keys.py (API keys, tenants), postgres_report.py (reports),
postgres_reader.py (the metrics thread's reads), postgres_lease.py (leases), postgres_history.py (measured history),
postgres_files.py (stored files).
"""

from __future__ import annotations

import psycopg

from ffrtmp.errors import InvalidInput, StoreUnavailable
from ffrtmp.master.store.health import WriteFault
from ffrtmp.master.store.postgres_files import FileRows
from ffrtmp.master.store.postgres_history import HistoryRows
from ffrtmp.master.store.postgres_jobs import JobRows
from ffrtmp.master.store.postgres_keys import KeyRows
from ffrtmp.master.store.postgres_lease import LeaseRows
from ffrtmp.master.store.postgres_reader import PostgresReader
from ffrtmp.master.store.postgres_report import PostgresReportRows
from ffrtmp.master.store.postgres_rows import LogNodeRows
from ffrtmp.master.store.postgres_session import SqliteStyle, first_line


class PostgresStore(LeaseRows, JobRows, LogNodeRows, KeyRows, HistoryRows, FileRows, PostgresReportRows):
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        """`migrate=False` (tools beside a running master): a database not migrated is refused."""
        super().__init__(url)
        self.path = self.shown
        """Where the store is, for messages (the URL without its password)."""
        self.conn = SqliteStyle(self)
        """SQLite-style `execute` (`?` placeholders), for tests and tools that run a statement of their own."""
        from ffrtmp.master.store import postgres_schema as schema

        raw = self.open_or_refuse()
        try:
            self._check_ours()
            if migrate:
                schema.migrate(raw)
            elif missing := schema.pending(raw):
                raise InvalidInput("db", f"{self.shown} is not migrated (its schema lacks "
                                   f"{', '.join(m.name for m in missing)}): start `ffrtmp master --db URL` "
                                   "once to create or upgrade it")
        except InvalidInput:
            self.close()
            raise
        except Exception as exc:  # a failure of the server while migrating: one line, the URL named
            self.close()
            raise InvalidInput("db", f"{self.shown}: the schema could not be read or migrated "
                               f"({first_line(exc)})") from None

    def _check_ours(self) -> None:
        """A database with tables but no ffrtmp migrations ledger is another application's: never take it over."""
        from ffrtmp.master.store import postgres_schema as schema

        assert self._conn is not None
        found = schema.tables(self._conn)
        if found and "schema_migrations" not in found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise InvalidInput("db", f"{self.shown} is not an ffrtmp store (it holds another application's tables:"
                               f" {shown}); point --db at a new database")
        if newer := schema.unknown_versions(self._conn):
            raise InvalidInput("db", f"{self.shown} was migrated by a newer ffrtmp (schema versions "
                               f"{', '.join(map(str, newer))}): run that version, or upgrade this one")

    @property
    def directory(self) -> str | None:
        return None  # the database lives on the server: no local disk to watch

    def reader(self) -> PostgresReader:
        """Reads for the metrics thread, on a connection of their own."""
        return PostgresReader(self.url)

    def check_writable(self) -> None:
        """Raise what a write would meet now (a read-only server, a role without rights): a rolled-back write."""
        conn = self.connect()
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("UPDATE schema_migrations SET name = name"
                             " WHERE version = (SELECT max(version) FROM schema_migrations)")
        except psycopg.Error as exc:
            raise self.fault(exc) from None


def open_postgres_store(url: str, *, migrate: bool = True) -> PostgresStore:
    """The store at `url`, migrated when `migrate` (a master), or InvalidInput naming what is wrong."""
    store = PostgresStore(url, migrate=migrate)
    if migrate:
        try:
            store.check_writable()
        except (StoreUnavailable, WriteFault) as exc:
            store.close()
            raise InvalidInput("db", f"{store.shown} cannot be written ({exc}): check the server and the role's "
                               "rights") from None
    return store
