"""Leadership among several masters on one store: a lease row with a term that only grows.

Every backend implements `Leadership`. The lease table holds one row; all times come from the database's
clock, so masters on different machines agree on expiry without trusting each other's clocks. A leader is
fenced by its exact (holder, term): once another master holds the lease, every write transaction of the old
leader raises `NotLeader` and rolls back, so a paused or partitioned leader commits nothing late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

LEADER = "leader"
STANDBY = "standby"
ROLES = (LEADER, STANDBY)


@dataclass(frozen=True)
class Lease:
    holder: str  # the master's --name
    term: int  # only grows; 0 means nobody has ever held it
    address: str  # the holder's --advertise address (tcp://HOST:PORT)
    expires_in: float  # seconds left, by the database's clock, when read (<= 0: expired)

    @property
    def live(self) -> bool:
        """Held right now: someone holds it and it has not expired."""
        return self.term > 0 and self.expires_in > 0


@dataclass(frozen=True)
class MasterRow:
    name: str
    address: str
    role: str  # "leader" | "standby"
    last_seen: float  # wall-clock epoch seconds (from the database's clock)


class NotLeader(Exception):
    """A write was refused: (name, term) no longer holds an unexpired lease."""

    def __init__(self, lease: Lease | None) -> None:
        self.lease = lease  # the current lease, if any
        if lease is None or not lease.live:
            super().__init__("not the leader; no master holds the lease now")
        else:
            super().__init__(f"not the leader; the leader is {lease.address}, term {lease.term}")


@runtime_checkable
class Leadership(Protocol):
    def claim_lease(self, name: str, address: str, ttl: float) -> Lease:
        """One transaction, on the database's clock. Lease free or expired: take it with term + 1 and
        expires = now + ttl. Otherwise return the current lease unchanged (also when `name` holds it:
        holding is renewed only through renew_lease)."""
        ...

    def renew_lease(self, name: str, term: int, ttl: float) -> Lease | None:
        """Extend to now + ttl only if (name, term) holds it and it has not expired; None otherwise."""
        ...

    def release_lease(self, name: str, term: int) -> bool:
        """Graceful stop: expire it now, only if (name, term) holds it."""
        ...

    def current_lease(self) -> Lease | None: ...

    def fence(self, name: str, term: int | None) -> None:
        """From now on every write transaction of this store first checks, inside that same transaction, that
        (name, term) holds an unexpired lease, and raises NotLeader (rolling back) if not. None: no fencing
        (a single master, today's behaviour)."""
        ...

    def announce_master(self, name: str, address: str, role: str) -> None:
        """Upsert this master's row: address, role, last_seen = the database's now."""
        ...

    def list_masters(self) -> list[MasterRow]: ...
