"""What a master is started with (`ffrtmp master` options); each default is in ffrtmp.defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ffrtmp import defaults
from ffrtmp.master.limits import JobLimits
from ffrtmp.master.logbook import LogPolicy
from ffrtmp.master.pricing import Pricing
from ffrtmp.master.recovery import RetryPolicy


@dataclass
class MasterConfig:
    api_key: str | None = None
    max_retries: int = defaults.MAX_RETRIES
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    node_timeout: float = defaults.NODE_TIMEOUT
    scheduler_interval: float = defaults.SCHEDULER_INTERVAL
    stall_timeout: float = defaults.STALL_TIMEOUT
    stall_timeouts: dict[str, float] = field(default_factory=dict)
    """Per-queue stall timeouts (e.g. shorter for `live`); queues not named use `stall_timeout`."""
    max_wait: float | None = None
    """Aging: a job pending longer than this is dispatched before newer, heavier ones. Off when None."""
    forget_offline: float | None = defaults.FORGET_OFFLINE
    """Nodes offline this long, with nothing left running, are forgotten. Never when None."""
    output_roots: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    logs: LogPolicy = field(default_factory=LogPolicy)
    rate_limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per-kind (rate per second, burst) overrides of ratelimit.DEFAULT_LIMITS."""
    preauth_rate: float = defaults.PREAUTH_RATE
    """Frames per second read from one peer that is not a joined worker (master/inbound.py)."""
    version: str = ""
    limits: JobLimits = field(default_factory=JobLimits)
    """The largest job this master accepts (size, rate, length, bitrate)."""
    store_min_free: int = defaults.STORE_MIN_FREE
    """Below this much free space on the store's disk the master refuses writes (degraded mode)."""
    submit_key_ttl: float = defaults.SUBMIT_KEY_TTL
    """How long a submit's idempotency key is remembered."""
    files_port: int = 0
    """The data channel's bound port (docs/files.md), told to workers in WELCOME and to clients by files_info;
    0: off."""
    pricing: Pricing = field(default_factory=Pricing)
    """Prices of energy and CPU time: a completed job's `cost` (master/pricing.py)."""
