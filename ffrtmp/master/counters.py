"""Events worth counting on the master; the metrics module reads them (from its own thread, as plain numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counters:
    messages: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    stale: int = 0
    dead_nodes: int = 0
    retries: int = 0
    unroutable: int = 0
    rate_limited: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, tenant) → requests or worker messages refused by the rate limiter."""
    refused_keys: int = 0
    """Messages dropped because the sender's CURVE key is no longer allowed."""
    refused_batches: int = 0
    """BATCH frames dropped because they did not come from a joined worker (clients never batch)."""
    stalled: int = 0
    """Attempts stopped because their progress stopped moving."""
    timed_out: int = 0
    """Attempts stopped past their job's timeout by the master."""
    recalled: int = 0
    """Prefetched attempts asked back for a node with a free slot (recall.py)."""
