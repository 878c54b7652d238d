"""Token buckets per key and request kind, driven by the caller's clock (pure, testable with a fixed one).

A request over its bucket gets status 429 ("retry after N s", exit 5 on the client) without touching the
store, so a flooding client costs the master little and the others keep their latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffrtmp.errors import InvalidInput

KINDS = ("submit", "read", "logs", "node")
"""The buckets: each client operation draws on one (ffrtmp.master.operations); worker messages on `node`."""

DEFAULT_LIMITS = {"submit": (500.0, 1000.0), "read": (500.0, 1000.0), "logs": (50.0, 100.0),
                  "node": (20_000.0, 40_000.0)}
"""(rate per second, burst) for each kind, per key. A worker sends about two messages per job it runs, so
its limit only stops a runaway: a busy worker of short jobs must never see its results dropped."""

MAX_BUCKETS = 100_000
"""Beyond this many keys seen, idle full buckets are forgotten (they would refill anyway)."""


@dataclass
class Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, limits: dict[str, tuple[float, float]] | None = None) -> None:
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.buckets: dict[tuple[str, str], Bucket] = {}

    def check(self, key: str, kind: str, now: float, cost: float = 1.0, partial: bool = False) -> float | None:
        """Take `cost` tokens; None when allowed, else the seconds until they are available. `partial`: take
        what is there when that is less (a penalty); a bucket never goes below zero."""
        rate, burst = self.limits[kind]
        if rate <= 0:
            return None  # unlimited
        bucket = self.buckets.get((key, kind))
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self.buckets[(key, kind)] = Bucket(burst, now)
        # `now` is monotonic; a clock that went back anyway refills nothing, and never drains a bucket.
        bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.at) * rate)
        bucket.at = max(bucket.at, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return None
        wait = (min(cost, burst) - bucket.tokens) / rate
        if partial:
            bucket.tokens = 0.0
        return wait

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self.buckets.items()):
            rate, burst = self.limits[key[1]]
            if bucket.tokens + max(0.0, now - bucket.at) * rate >= burst:
                del self.buckets[key]


def parse_limits(values: list[str]) -> dict[str, tuple[float, float]]:
    """`submit=50/100` (rate per second / burst), `logs=10`, `read=0` (unlimited)."""
    limits: dict[str, tuple[float, float]] = {}
    for value in values:
        kind, sep, spec = value.partition("=")
        if not sep or kind not in KINDS:
            raise InvalidInput("rate-limit", f"{value!r} must be KIND=RATE[/BURST] with KIND one of {', '.join(KINDS)}")
        rate_text, _, burst_text = spec.partition("/")
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text else max(1.0, 2 * rate)
        except ValueError:
            raise InvalidInput("rate-limit", f"{value!r}: RATE and BURST must be numbers") from None
        if rate < 0 or burst < 1:
            raise InvalidInput("rate-limit", f"{value!r}: RATE must be >= 0 and BURST >= 1")
        limits[kind] = (rate, burst)
    return limits
