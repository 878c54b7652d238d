"""The SQLite side of `Leadership` (store/leases.py): a mixin of `Store`, over its connection.

Several masters on one SQLite file (one machine) then form a real cluster: SQLite's write lock serialises
the claim, renewal and fence check, so the (holder, term) a write transaction sees at its start stays true
until it commits (`BEGIN IMMEDIATE` holds the lock that any takeover would need). The clock is this
machine's, the only one all masters on one file share; `lease_clock` is swapped in tests.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.leases import ROLES, Lease, MasterRow, NotLeader


def m009_leader_lease(db: sqlite_utils.Database) -> None:
    """One lease row (term 0: never held) and one row per master seen (for `cluster status`)."""
    for statement in (
        """CREATE TABLE leader_lease (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL DEFAULT '',
            term INTEGER NOT NULL DEFAULT 0,
            address TEXT NOT NULL DEFAULT '',
            expires_at REAL NOT NULL DEFAULT 0
        )""",
        "INSERT INTO leader_lease (id) VALUES (1)",
        """CREATE TABLE masters (
            name TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            role TEXT NOT NULL,
            last_seen REAL NOT NULL
        ) WITHOUT ROWID""",
    ):
        db.execute(statement)


class LeaseRows:
    """The lease part of `Store` (a mixin: it uses the store's connection)."""

    conn: sqlite3.Connection

    def lease_clock(self) -> float:
        """The database's clock, for SQLite: this machine's wall clock (read at each call: tests and the
        chaos bench swap it)."""
        return time.time()
    _fenced: tuple[str, int] | None = None
    _fencing: bool = False

    @contextmanager
    def _lease_transaction(self) -> Iterator[None]:
        """Its own short write transaction, never fenced (the lease decides who may write, so it comes first)."""
        if self.conn.in_transaction:  # called inside a store transaction: its writes join it
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _lease_row(self, now: float) -> Lease:
        holder, term, address, expires_at = self.conn.execute(
            "SELECT holder, term, address, expires_at FROM leader_lease WHERE id = 1").fetchone()
        return Lease(holder=holder, term=term, address=address, expires_in=expires_at - now)

    def claim_lease(self, name: str, address: str, ttl: float) -> Lease:
        with self._lease_transaction():
            now = self.lease_clock()
            lease = self._lease_row(now)
            if lease.term > 0 and lease.expires_in > 0:
                return lease
            self.conn.execute("UPDATE leader_lease SET holder = ?, term = term + 1, address = ?, expires_at = ?"
                              " WHERE id = 1", (name, address, now + ttl))
            return Lease(holder=name, term=lease.term + 1, address=address, expires_in=ttl)

    def renew_lease(self, name: str, term: int, ttl: float) -> Lease | None:
        with self._lease_transaction():
            now = self.lease_clock()
            renewed = self.conn.execute(
                "UPDATE leader_lease SET expires_at = ? WHERE id = 1 AND holder = ? AND term = ? AND expires_at > ?",
                (now + ttl, name, term, now)).rowcount
            return self._lease_row(now) if renewed else None

    def release_lease(self, name: str, term: int) -> bool:
        with self._lease_transaction():
            now = self.lease_clock()
            return bool(self.conn.execute(
                "UPDATE leader_lease SET expires_at = ? WHERE id = 1 AND holder = ? AND term = ? AND expires_at > ?",
                (now, name, term, now)).rowcount)

    def current_lease(self) -> Lease | None:
        lease = self._lease_row(self.lease_clock())
        return lease if lease.term > 0 else None

    def fence(self, name: str, term: int | None) -> None:
        self._fencing = term is not None
        self._fenced = (name, term) if term is not None else None

    def check_fence(self) -> None:
        """Called first inside every write transaction of the store: refuse it unless we hold the lease."""
        if not self._fencing:
            return
        lease = self._lease_row(self.lease_clock())
        if self._fenced != (lease.holder, lease.term) or lease.expires_in <= 0:
            raise NotLeader(lease if lease.term > 0 else None)

    def announce_master(self, name: str, address: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidInput("role", f"{role!r} is not a master role ({', '.join(ROLES)})")
        with self._lease_transaction():
            self.conn.execute(
                "INSERT INTO masters (name, address, role, last_seen) VALUES (?, ?, ?, ?) ON CONFLICT(name)"
                " DO UPDATE SET address = excluded.address, role = excluded.role, last_seen = excluded.last_seen",
                (name, address, role, self.lease_clock()))

    def list_masters(self) -> list[MasterRow]:
        rows = self.conn.execute("SELECT name, address, role, last_seen FROM masters ORDER BY name")
        return [MasterRow(name=name, address=address, role=role, last_seen=last_seen)
                for name, address, role, last_seen in rows]
