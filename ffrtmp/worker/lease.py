"""The worker's side of the node timeout: a lease on its attempts that only the master's messages renew.

The master gives a node's attempts away once it has not heard from the node for `node_timeout`. The worker
cannot know that moment exactly, but it can see the mirror of it: the same stretch of silence from the master
(the master answers every heartbeat). When that has passed, its attempts are no longer its own, and it stops
them instead of encoding (or publishing to a stream key) alongside their new attempt. Monotonic time only:
a step of the wall clock must neither end a lease early nor stretch it.

A master that is down gives nothing away, and one that restarts grants every node a fresh node timeout. So
while the master's port refuses connections (no master process there, as opposed to a partition or a frozen
master, which time out or accept), the lease is renewed: a short master restart must keep its running
attempts to adopt.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

REFUSAL_PROBE_TIMEOUT = 0.2
"""A refusal comes back within a round trip; a partition never answers, and the loop must not wait long."""


@dataclass
class MasterLease:
    node_timeout: float
    heard_at: float = 0.0
    """Monotonic time of the last message from the master (or of the start: a fresh lease)."""

    def heard(self, now: float) -> None:
        self.heard_at = now

    def silent_for(self, now: float) -> float:
        return max(0.0, now - self.heard_at)

    def expired(self, now: float) -> bool:
        return self.silent_for(now) > self.node_timeout

    def due_in(self, now: float) -> float:
        """Seconds until it expires (0 once it has)."""
        return max(0.0, self.heard_at + self.node_timeout - now)


def master_down(url: str, timeout: float = REFUSAL_PROBE_TIMEOUT) -> bool:
    """True only when a TCP connection to the master's address is refused: nothing listens there."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return False  # something accepts: a live (maybe frozen) master
    except ConnectionRefusedError:
        return True
    except (OSError, ValueError):
        return False  # unreachable or silent: a partition, which is exactly when the lease must end
