"""Which master of `--master a,b,c` the worker talks to, and when it moves to another one (pure: no socket, no clock).

The list is tried in order. A standby answers NOT_LEADER: when it names a leader the worker goes there at once;
while none leads (an election) it waits a short backoff and tries the list again. A master that refuses
connections (its process is gone) is left for the next address at once, and one that accepts but stays silent
(frozen, partitioned) after a few heartbeats. A leader named by a standby is followed only if the list holds it,
or if the worker was given a single address (a seed: every leader it names is accepted and learned): a list of
several is the operator's word on which masters may be trusted with this worker's jobs.

The core (`core.py`) asks this object where to go and reconnects; the lease on the attempts (`lease.py`) keeps
running meanwhile, so attempts survive a failover that ends within the node timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ffrtmp.masters import MasterList, leader_named

log = logging.getLogger("ffrtmp.worker")

NO_LEADER_BACKOFF = 0.25
"""First wait after "no master leads" (an election takes about the lease's ttl, 2 s by default); doubles."""
NO_LEADER_BACKOFF_MAX = 2.0
LOSS_GRACE = 0.25
"""A joined master answers every heartbeat: silent this long past one interval, it is probed."""
JOIN_PROBE_AFTER = 0.5
"""Joining, an address that has said nothing for this long is probed (a refused one is left at once)."""
JOIN_PATIENCE = 4.0
"""Joining, an address that accepts connections but answers nothing for this long is left for the next."""
JOINED_PATIENCE = 3
"""Joined, a master silent (though accepting) for this many heartbeat intervals is left for the next."""
DOWN_MEMORY = 5.0
"""For this long after an address refused connections, a standby's word that it leads is not believed (the
standby has not yet seen that leader's lease run out) and the list's next address skips it."""


class Follower:
    def __init__(self, text: str, mono: float, field: str = "master") -> None:
        self.masters = MasterList.parse(text, field)
        self.seeded = len(self.masters) == 1
        """Given one address: a leader it names is accepted even though the list does not hold it."""
        self.since = mono
        """When the connection to the current address was made."""
        self.heard_at = -float("inf")
        """Last frame from the current address (a standby's refusal counts)."""
        self.down: dict[str, float] = {}
        """Addresses found refusing connections in this search, and when (forgotten after DOWN_MEMORY, when one
        speaks, and once a master welcomes us)."""
        self.retry_at: float | None = None
        """While no master leads: when to try the list again."""
        self.backoff = NO_LEADER_BACKOFF
        self.ignored: set[str] = set()
        """Leaders named outside the list (logged once each)."""

    @property
    def address(self) -> str:
        return self.masters.address

    @property
    def several(self) -> bool:
        """More than one master to go to: losing one means moving on, not waiting for it."""
        return len(self.masters) > 1

    def __str__(self) -> str:
        return str(self.masters)

    # ---- what happened -------------------------------------------------------------------------------

    def connected(self, mono: float) -> None:
        self.since = mono
        self.heard_at = -float("inf")

    def heard(self, mono: float) -> None:
        self.heard_at = mono
        self.down.pop(self.address, None)

    def welcomed(self) -> None:
        """Joined: the search is over, and what it found down may be back by the time the next one starts."""
        self.backoff = NO_LEADER_BACKOFF
        self.retry_at = None
        self.down.clear()

    def found_down(self, mono: float) -> None:
        self.down[self.address] = mono

    def quiet_for(self, mono: float) -> float:
        """How long the current address has said nothing (since connecting, if it never spoke)."""
        return max(0.0, mono - max(self.since, self.heard_at))

    def all_down(self, mono: float) -> bool:
        """Every address refused connections lately: no master runs anywhere, so none can give attempts away."""
        return all(mono - self.down.get(address, -float("inf")) <= DOWN_MEMORY for address in self.masters.addresses)

    # ---- where to go ---------------------------------------------------------------------------------

    def not_leader(self, body: Mapping[str, Any], mono: float) -> str | None:
        """A standby refused us: the address to go to now, or None to wait (`retry_due`) and try the list again."""
        leader = leader_named(body)
        if leader is not None and leader != self.address and self.trusts(leader, mono):
            self.retry_at = None
            return self.masters.follow(leader)
        if self.retry_at is None:  # a standby answers each frame: one wait per election, not one per refusal
            self.retry_at = mono + self.backoff
            self.backoff = min(NO_LEADER_BACKOFF_MAX, self.backoff * 2)
        return None

    def trusts(self, leader: str, mono: float) -> bool:
        if mono - self.down.get(leader, -float("inf")) <= DOWN_MEMORY:
            return False  # the leader we just lost: its lease has not run out yet where the standby reads it
        if self.seeded or leader in self.masters.addresses:
            return True
        if leader not in self.ignored:
            self.ignored.add(leader)
            log.warning("a standby names %s as the leader, which --master (%s) does not list: not followed "
                        "(add it to --master)", leader, self.masters)
        return False

    def waiting(self, mono: float) -> bool:
        """No master leads, and the backoff before trying again is not over."""
        return self.retry_at is not None and mono < self.retry_at

    def retry_due(self, mono: float) -> bool:
        return self.retry_at is not None and mono >= self.retry_at

    def next(self, mono: float) -> str:
        """The list's next address, passing over those that refused lately (unless all did)."""
        self.retry_at = None
        for _ in range(len(self.masters)):
            address = self.masters.next()
            if mono - self.down.get(address, -float("inf")) > DOWN_MEMORY:
                return address
        return self.masters.next()

    def probe_after(self, welcomed: bool, heartbeat: float) -> float:
        """How much silence from the current address (of a list of several) makes it worth a probe."""
        return (heartbeat + LOSS_GRACE) if welcomed else JOIN_PROBE_AFTER

    def patience(self, welcomed: bool, heartbeat: float) -> float:
        """How long an address that accepts connections may stay silent before the next one is tried."""
        return max(JOINED_PATIENCE * heartbeat, 3.0) if welcomed else JOIN_PATIENCE
