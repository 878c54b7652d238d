"""Which master leads: a state machine over the store's lease (store/leases.py), driven by `tick(now, mono)`.

A standby reads the lease every `poll_every` and claims it once it is free or expired. The leader renews it
every `renew_every`; it trusts its lease, on its own monotonic clock, only until `ttl` minus a margin after
the start of its last successful renewal, so it stops dispatching before any standby can take over, even
when the database cannot be reached to say so. A refused renewal, a lapsed trust or a write that raised
`NotLeader` makes it step down: the caller drops its in-memory state and only answers "not the leader"
until this master wins the lease again. A graceful stop releases the lease, so a standby takes over within
one poll instead of a whole ttl. Standbys spread their looks at the lease by a random part of a poll
(`JITTER`), so several of them do not all try to claim it in the same instant when it runs out.

No I/O but the store's, no clock but the one passed in: tests drive it with a fixed clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.leases import LEADER, STANDBY, Leadership, Lease, NotLeader

log = logging.getLogger("ffrtmp.master")

EXPIRY_SLACK = 0.01
"""A standby looks at the lease this long after it should have run out (the clocks of one database)."""
JITTER = 0.4
"""A standby's next look at the lease comes up to this fraction of a poll later than due, drawn anew each time:
three standbys watching one expiry then claim one after the other, and the first usually wins unopposed."""
ANNOUNCE_EVERY = 1.0
"""How often a master refreshes its own row in the masters table (`cluster status` shows its last_seen)."""


@dataclass(frozen=True)
class LeaseTimings:
    ttl: float = defaults.LEASE_TTL
    renew_every: float = defaults.LEASE_RENEW
    poll_every: float = defaults.STANDBY_POLL

    def __post_init__(self) -> None:
        for field, value in (("lease-ttl", self.ttl), ("lease-renew", self.renew_every),
                             ("standby-poll", self.poll_every)):
            if value <= 0:
                raise InvalidInput(field, f"{value:g}s must be a positive duration")
        if self.renew_every * 2 > self.ttl:
            raise InvalidInput("lease-renew", f"{self.renew_every:g}s must be at most half of --lease-ttl "
                               f"({self.ttl:g}s), so one lost renewal does not cost the lease")

    @property
    def trust(self) -> float:
        """How long after a renewal began the leader still acts on it: short of the ttl by a margin that
        covers the renewal's own round trip and a slow loop."""
        return self.ttl - min(self.ttl / 4, 1.0)


class Election:
    """One master's view of the lease: `leading` says whether it may dispatch and write now."""

    def __init__(self, store: Leadership, name: str, address: str, timings: LeaseTimings | None = None, *,
                 on_elected: Callable[[int], None] = lambda term: None,
                 on_deposed: Callable[[Lease | None], None] = lambda lease: None,
                 keeps_lease_on: Callable[[BaseException], bool] = lambda exc: False,
                 jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.name = name
        self.address = address
        self.timings = timings or LeaseTimings()
        self.on_elected = on_elected
        """Called with the new term once this master holds the lease (rebuild state, start dispatching)."""
        self.on_deposed = on_deposed
        """Called with the lease as last read (another's, or None) once this master stopped leading."""
        self.role = STANDBY
        self.term: int | None = None
        """The term this master holds while it leads."""
        self.lease: Lease | None = None
        """The lease as last read: who leads, where and in which term (what standbys tell their peers)."""
        self.due = 0.0
        """Monotonic: the next renewal (leader) or lease read (standby)."""
        self.trusted_until = 0.0
        self.announced = -ANNOUNCE_EVERY
        self.elections = 0
        """Terms this master won."""
        self.failovers = 0
        """Terms this master won after an earlier one (a takeover, from a peer or from its own past run)."""
        self.unreadable = False
        """The last look at the lease failed (the store cannot be read)."""
        self.keeps_lease_on = keeps_lease_on
        """Renewal errors that do not end the leadership: the store's disk is full or failing."""
        self.stalled = False
        """The last renewal failed that way."""
        self.jitter = jitter
        """A draw in [0, 1): the share of `JITTER` of a poll added to a standby's next look (fixed in tests)."""
        self.refused_writes = 0
        """Writes of this master refused because another master held the lease (a stale leader's, fenced)."""

    @property
    def leading(self) -> bool:
        return self.role == LEADER

    def tick(self, now: float, mono: float) -> None:
        if self.leading and (mono >= self.due or mono >= self.trusted_until):
            self._renew(mono)
        if not self.leading and mono >= self.due:  # also right after stepping down: the lease may be free
            self._poll(mono)
        if mono - self.announced >= ANNOUNCE_EVERY:
            self._announce(mono)

    def lost(self, error: NotLeader, mono: float) -> None:
        """A write was refused: another master holds the lease (or ours ran out) and this one must stand by."""
        self.refused_writes += 1
        self.step_down(error.lease, f"a write was refused ({error})", mono)

    def step_down(self, lease: Lease | None, why: str, mono: float) -> None:
        if not self.leading:
            return
        log.warning("master %s no longer leads (term %s): %s; standing by", self.name, self.term, why)
        self.role, self.term = STANDBY, None
        self.store.fence(self.name, 0)
        self.lease = lease
        self.due = mono  # look at the lease at once: it may be free to take again
        self.on_deposed(lease)
        self._announce(mono)

    def stop(self, mono: float) -> None:
        """Graceful stop: hand the lease back, so a standby takes over at its next poll."""
        if not self.leading or self.term is None:
            return
        term = self.term
        self.role, self.term = STANDBY, None
        self.store.fence(self.name, 0)
        try:
            released = self.store.release_lease(self.name, term)
            self.store.announce_master(self.name, self.address, STANDBY)
        except Exception as exc:  # the store is gone: the lease runs out by itself within its ttl
            log.warning("master %s could not release the lease of term %d (%s); it expires within %gs",
                        self.name, term, exc, self.timings.ttl)
            return
        if released:
            log.info("master %s released the lease of term %d", self.name, term)

    # ---- the two roles ---------------------------------------------------------------------------

    def _renew(self, mono: float) -> None:
        self.due = mono + self.timings.renew_every
        assert self.term is not None
        try:
            renewed = self.store.renew_lease(self.name, self.term, self.timings.ttl)
        except NotLeader as exc:
            self.step_down(exc.lease, str(exc), mono)
            return
        except Exception as exc:  # the database cannot be reached: keep the trust we have, no more
            if self.keeps_lease_on(exc):
                # The store's disk is full or failing: no master can write it, so none can take over, and
                # every write of ours is refused by the store (degraded) or fenced. Stay, serve reads.
                if not self.stalled:
                    log.warning("master %s cannot renew its lease while its store cannot be written (%s); it "
                                "stays leader, and no write of its lands unless it still holds the lease",
                                self.name, exc)
                self.stalled = True
            elif mono >= self.trusted_until:
                self.step_down(None, f"its lease could not be renewed ({exc}) and has run out", mono)
            else:
                log.warning("master %s could not renew its lease (%s); it trusts it %.1fs more", self.name, exc,
                            self.trusted_until - mono)
            return
        self.stalled = False
        if renewed is None:
            self.step_down(self._read(), "its lease was taken over or ran out", mono)
            return
        self.lease = renewed
        self.trusted_until = mono + self.timings.trust

    def _spread(self) -> float:
        return JITTER * self.timings.poll_every * min(max(self.jitter(), 0.0), 1.0)

    def _poll(self, mono: float) -> None:
        self.due = mono + self.timings.poll_every + self._spread()
        try:
            lease = self.store.current_lease()
            if (lease is not None and lease.live and lease.holder == self.name and lease.address == self.address
                    and not self.elections):
                # Our own earlier run, killed before it could release (a restart on the same address: that
                # run no longer holds this port). Expire it, so the claim below opens the next term now.
                self.store.release_lease(lease.holder, lease.term)
                lease = self.store.current_lease()
            won = False
            if lease is None or not lease.live:
                before = lease.term if lease is not None else 0
                lease = self.store.claim_lease(self.name, self.address, self.timings.ttl)
                won = lease.holder == self.name and lease.term > before
        except Exception as exc:
            if not self.unreadable:  # said once, not at every poll
                log.warning("master %s could not read the lease (%s); trying again every %gs", self.name, exc,
                            self.timings.poll_every)
            self.unreadable = True
            return
        if self.unreadable:
            log.info("master %s reads the lease again", self.name)
            self.unreadable = False
        if won:
            self._elected(lease, mono)  # outside the try: a failed rebuild is the caller's to handle
            return
        self.lease = lease
        if lease is not None and lease.live:  # look again right as it runs out, not up to a poll later
            self.due = mono + min(self.timings.poll_every, lease.expires_in + EXPIRY_SLACK) + self._spread()

    def _elected(self, lease: Lease, mono: float) -> None:
        self.role, self.term, self.lease = LEADER, lease.term, lease
        self.trusted_until = mono + self.timings.trust
        self.due = mono + self.timings.renew_every
        self.store.fence(self.name, lease.term)
        self.elections += 1
        if lease.term > 1:
            self.failovers += 1
        log.info("master %s leads (term %d, %s)", self.name, lease.term, self.address)
        try:
            self.on_elected(lease.term)
        except NotLeader as exc:  # lost again while rebuilding (a very slow start): stand by
            self.step_down(exc.lease, str(exc), mono)
            return
        except BaseException:  # it cannot lead (its store fails): let another take over at once
            self.stop(mono)
            self.due = mono + self.timings.ttl  # and give the others a whole lease's time to do so
            raise
        self._announce(mono)

    def _read(self) -> Lease | None:
        try:
            return self.store.current_lease()
        except Exception:
            return None

    def _announce(self, mono: float) -> None:
        self.announced = mono
        try:
            self.store.announce_master(self.name, self.address, self.role)
        except Exception as exc:
            log.debug("master %s could not refresh its row in the masters table: %s", self.name, exc)
