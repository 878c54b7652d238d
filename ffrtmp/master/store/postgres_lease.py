"""The PostgreSQL side of `Leadership` (store/leases.py): one lease row, on the database's clock.

Every time is `clock_timestamp()` of the server, so masters on different machines agree on expiry without
trusting each other's clocks. A fenced store's write transactions start with a `FOR SHARE` read of the lease
row matched on the exact (holder, term) and unexpired (postgres_session.py): a takeover's UPDATE of that row
waits for the write to commit, and a write that starts after the takeover finds no row and rolls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.leases import ROLES, Lease, MasterRow, NotLeader
from ffrtmp.master.store.postgres_session import Row, Session

# The expiry of a takeover is computed when the row is updated, never from `excluded` (the statement's start):
# a claim may wait on the row's lock (a frozen leader's fenced write holds it FOR SHARE), and a lease timed
# from before that wait would be granted already expired, and taken again by the next claim in the queue:
# two terms in one instant, each master believing it leads (found by scripts/bench/failover.py).
LEASE_COLUMNS = "holder, term, address, extract(epoch FROM expires_at - clock_timestamp())::float8 AS expires_in"

CLAIM = f"""
INSERT INTO leader_lease (holder, address, term, expires_at)
VALUES (%(name)s, %(address)s, 1, clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address,
    term = leader_lease.term + 1, expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE leader_lease.expires_at <= clock_timestamp()
RETURNING {LEASE_COLUMNS}"""


def _lease(row: Row | None) -> Lease | None:
    if row is None:
        return None
    return Lease(holder=row["holder"], term=int(row["term"]), address=row["address"],
                 expires_in=float(row["expires_in"]))


class LeaseRows(Session):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.on_fence_lost = lambda: NotLeader(self.current_lease())

    @contextmanager
    def _lease_transaction(self) -> Iterator[None]:
        """Its own short transaction, never fenced: the lease decides who may write, so it comes first."""
        fenced, self.fenced = self.fenced, None
        try:
            with self.transaction():
                yield
        finally:
            self.fenced = fenced

    def claim_lease(self, name: str, address: str, ttl: float) -> Lease:
        """Free or expired: take it with term + 1 until now + ttl. Held: the current lease, unchanged."""
        with self._lease_transaction():
            taken = _lease(self.one(CLAIM, {"name": name, "address": address, "ttl": ttl}))
            if taken is not None:
                return taken
            current = _lease(self.one(f"SELECT {LEASE_COLUMNS} FROM leader_lease"))
            assert current is not None  # the upsert found a live row
            return current

    def renew_lease(self, name: str, term: int, ttl: float) -> Lease | None:
        with self._lease_transaction():
            return _lease(self.one(
                "UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                f" WHERE holder = %s AND term = %s AND expires_at > clock_timestamp() RETURNING {LEASE_COLUMNS}",
                (ttl, name, term)))

    def release_lease(self, name: str, term: int) -> bool:
        with self._lease_transaction():
            return self.execute("UPDATE leader_lease SET expires_at = clock_timestamp()"
                                " WHERE holder = %s AND term = %s AND expires_at > clock_timestamp()",
                                (name, term)).rowcount == 1

    def current_lease(self) -> Lease | None:
        lease = _lease(self.one(f"SELECT {LEASE_COLUMNS} FROM leader_lease"))
        return lease if lease is not None and lease.term > 0 else None

    def fence(self, name: str, term: int | None) -> None:
        self.fenced = (name, term) if term is not None else None

    def announce_master(self, name: str, address: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidInput("role", f"{role!r} is not a master role ({', '.join(ROLES)})")
        with self._lease_transaction():
            self.execute("INSERT INTO masters (name, address, role, last_seen) VALUES (%s, %s, %s, clock_timestamp())"
                         " ON CONFLICT (name) DO UPDATE SET address = excluded.address, role = excluded.role,"
                         " last_seen = excluded.last_seen", (name, address, role))

    def list_masters(self) -> list[MasterRow]:
        rows = self.all("SELECT name, address, role, extract(epoch FROM last_seen)::float8 AS last_seen"
                        " FROM masters ORDER BY name")
        return [MasterRow(name=row["name"], address=row["address"], role=row["role"],
                          last_seen=float(row["last_seen"])) for row in rows]
