"""The worker core's side of following the leader: noticing a lost master, moving on, answering a standby.

`follow.Follower` says where to go; this acts on the core: a new connection (`Link.reconnect`, to
`WorkerCore.address`), a fresh HELLO (which reports the running attempts, for the new leader to adopt, and is
followed by every unacknowledged result and log line once it welcomes us), and the lease on the attempts.

The lease is renewed only by a master that leads (a standby's refusal renews nothing: it will not give our
attempts back), and by a refused port only while every listed master refuses: a master that is down gives
nothing away, but while another one of the list runs, it may lead and count our silence. So during a
failover the attempts are kept for the node timeout since the old leader last spoke, as after a restart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sized
from typing import Any, Protocol

from ffrtmp.worker.follow import Follower
from ffrtmp.worker.lease import MasterLease

log = logging.getLogger("ffrtmp.worker")

PROBE_EVERY = 0.5
"""With several masters listed, how often a silent one is probed (a refused connection answers at once)."""


class Connection(Protocol):
    """The connection to the master, as far as following goes (the core's `Link`)."""

    def reconnect(self) -> None:
        """Replace the connection, by one to the follower's address."""
        ...

    def master_down(self) -> bool:
        """True only when nothing listens at the follower's address."""
        ...


class Joining(Protocol):
    """What following needs of the worker core: where it stands with its master, and a fresh start at joining."""

    @property
    def welcomed(self) -> bool:
        """The master on this connection has welcomed us."""
        ...

    @property
    def heartbeat_interval(self) -> float:
        ...

    @property
    def attempts(self) -> Sized:
        """The attempts the worker holds (only how many matters here)."""
        ...

    def connected(self) -> None:
        """A new connection (or one that turned out not to lead): HELLO again, hold logs until welcomed."""
        ...


class Following:
    def __init__(self, master: str, core: Joining, link: Connection, lease: MasterLease, mono: float) -> None:
        """`master`: the --master list; `lease`: the lease on the attempts, kept while every master is down."""
        self.core = core
        self.link = link
        self.lease = lease
        self.follower = Follower(master, mono)
        self.connected_to = self.follower.address
        """Where the link's connection goes (the loop connects there first)."""
        self.next_probe = 0.0
        self.down_said = False

    def heard(self, mono: float) -> None:
        self.follower.heard(mono)

    def speaking(self) -> None:
        """A leader spoke: the next time it is found down is worth a log line again."""
        self.down_said = False

    def welcomed(self) -> None:
        self.follower.welcomed()

    # ---- a standby's answer -------------------------------------------------------------------------

    def not_leader(self, body: dict[str, Any], mono: float) -> None:
        """NOT_LEADER: go where the standby says the leader is, or wait for the election to end."""
        core, follower = self.core, self.follower
        core.connected()  # not joined here: logs are held, and HELLO goes out on the next connection
        was_waiting = follower.retry_at is not None
        target = follower.not_leader(body, mono)
        if target is not None:
            self.move(target, mono, f"{self.connected_to} is not the leader ({body.get('error', '')})")
        elif not was_waiting:
            log.info("%s is not the leader and no master leads now: trying %s again in %.2fs", self.connected_to,
                     follower, follower.retry_at - mono if follower.retry_at is not None else 0.0)

    # ---- the master's loss --------------------------------------------------------------------------

    def watch(self, mono: float) -> None:
        """Probe a silent master; move on from a lost one when another is listed."""
        core, follower = self.core, self.follower
        if follower.retry_due(mono):
            self.move(follower.next(mono), mono, "no master led a moment ago")
            return
        if mono < self.next_probe or not self.probe_wanted(mono):
            return
        self.next_probe = mono + (PROBE_EVERY if follower.several else max(0.5, core.heartbeat_interval))
        lost = follower.address
        if self.link.master_down():
            follower.found_down(mono)
            if follower.all_down(mono):
                self.keep_attempts(mono)
            if follower.several:
                self.move(follower.next(mono), mono, f"master {lost} is down (connection refused)")
        elif follower.several and follower.quiet_for(mono) > follower.patience(core.welcomed,
                                                                              core.heartbeat_interval):
            self.move(follower.next(mono), mono, f"master {lost} silent for {follower.quiet_for(mono):.1f}s")

    def probe_wanted(self, mono: float) -> bool:
        core, follower = self.core, self.follower
        if follower.several:
            return follower.quiet_for(mono) > follower.probe_after(core.welcomed, core.heartbeat_interval)
        # One master: probed only for the lease's sake, while it holds attempts and is silent.
        return bool(core.attempts) and self.lease.silent_for(mono) > 2 * core.heartbeat_interval

    def keep_attempts(self, mono: float) -> None:
        """No listed master runs: none can give the attempts away, and a restarted one grants a fresh lease."""
        core = self.core
        if core.attempts and not self.down_said:
            self.down_said = True
            what = f"master {self.follower.address} is" if not self.follower.several else \
                f"every master ({self.follower}) is"
            log.warning("%s down (connection refused): keeping %d attempts for it to adopt", what,
                        len(core.attempts))
        # Probed often while it is silent: its restart (and fresh node timeout) is then never long after the
        # last refusal, and the lease that follows cannot run out just before the new master speaks.
        self.lease.heard(mono)

    def lease_expired(self, mono: float) -> None:
        """The lease ran out (the attempts are stopped): reconnect, to the next master when several are listed."""
        follower, silent = self.follower, self.lease.silent_for(mono)
        if follower.several:
            self.move(follower.next(mono), mono, f"no leader heard from for {silent:.0f}s", fresh=True)
        else:
            self.move(follower.address, mono, f"master {follower.address} silent for {silent:.0f}s", fresh=True)

    def move(self, address: str, mono: float, why: str, fresh: bool = False) -> None:
        """A new connection (when the address changed, or `fresh`), then HELLO: the new master adopts what runs."""
        core = self.core
        if fresh or address != self.connected_to:
            if address == self.connected_to:
                log.warning("%s: reconnecting", why)
            else:
                log.warning("%s: connecting to %s", why, address)
            self.link.reconnect()
            self.connected_to = address
        core.connected()
        self.follower.connected(mono)

    def due_in(self, mono: float) -> float:
        """Seconds until `watch` has something to do (the loop's wait ends then)."""
        core, follower = self.core, self.follower
        if follower.retry_at is not None:
            return max(0.0, follower.retry_at - mono)
        if not follower.several:
            return math.inf
        silence = follower.probe_after(core.welcomed, core.heartbeat_interval) - follower.quiet_for(mono)
        return max(0.0, self.next_probe - mono, silence)
