"""The narrow state every message handler, request and dispatch pass receives instead of the coordinator.

Each part owns one thing: the registry the nodes and their slots, the lifecycle the job transitions through
the store, the outbox the frames to send, the clock the batch's clocks, `due` the next dispatch pass. The
coordinator builds one `MasterState`, drives it, and alone sends what the outbox holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ffrtmp.master.activity import Activity
from ffrtmp.master.auth import Authority
from ffrtmp.master.clock import Clock, DispatchDue
from ffrtmp.master.config import MasterConfig
from ffrtmp.master.counters import Counters
from ffrtmp.master.inbound import InboundGate
from ffrtmp.master.lifecycle import Lifecycle
from ffrtmp.master.logbook import Logbook
from ffrtmp.master.observer import Observers
from ffrtmp.master.outbox import Outbox
from ffrtmp.master.ratelimit import RateLimiter
from ffrtmp.master.registry import NodeRegistry
from ffrtmp.master.store import Store
from ffrtmp.master.store.health import StoreHealth
from ffrtmp.master.wait_reasons import NeedsReasons


@dataclass
class MasterState:
    store: Store
    config: MasterConfig
    clock: Clock
    due: DispatchDue
    registry: NodeRegistry
    outbox: Outbox
    lifecycle: Lifecycle
    logbook: Logbook
    authority: Authority
    observer: Observers
    counters: Counters
    activity: Activity
    limiter: RateLimiter
    inbound: InboundGate
    store_health: StoreHealth
    started_at: float
    """Wall time of the master's start (`stats` uptime)."""
    sender: str | None = None
    """The CURVE key of the message being handled (None without CURVE)."""
    needs_reasons: NeedsReasons = field(default_factory=NeedsReasons)
    tenant_turns: dict[str, int] = field(default_factory=dict)
    """Jobs dispatched per tenant with pending work: the fair share between tenants (dispatch.fair_order)."""
    pending_cache: dict[str, int] | None = None
    """Pending jobs per engine, counted once per batch for heartbeat replies (handlers.pending_for)."""

    def limited(self, key: str, kind: str, tenant: str) -> float | None:
        """Take one token of `key`'s `kind` bucket now; the seconds to wait when there is none (counted)."""
        wait = self.limiter.check(key, kind, self.clock.mono)
        if wait is not None:
            self.counters.rate_limited[(kind, tenant)] = self.counters.rate_limited.get((kind, tenant), 0) + 1
        return wait

    def peer(self, route: bytes) -> str:
        """Who sent the message being handled: its CURVE key, or its connection without CURVE."""
        return self.sender or route.hex()
