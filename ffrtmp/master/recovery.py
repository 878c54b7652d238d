"""Pure rules for failed attempts: what kind of failure it was, whether to retry, and when.

No I/O and no clock of its own: callers pass `now` and a random source, so tests fix both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ffrtmp import defaults
from ffrtmp.failures import Failure

RETRYABLE = frozenset({Failure.WORKER_LOST, Failure.TIMEOUT, Failure.STALLED, Failure.ENCODER_ERROR})
"""Failures another attempt (usually on another node) may cure. Bad input and cancels are final."""

IMMEDIATE = frozenset({Failure.WORKER_LOST})
"""Failures that are not the job's fault: its retry is dispatched at once, without backoff."""


@dataclass(frozen=True)
class RetryPolicy:
    base: float = defaults.RETRY_BACKOFF_BASE
    cap: float = defaults.RETRY_BACKOFF_MAX

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (1-based): base doubling up to cap, with equal jitter."""
        delay = min(self.cap, self.base * 2.0 ** min(max(0, attempt - 1), 64))
        return delay / 2 + rng.uniform(0, delay / 2)

    def next_try(self, failure: Failure, attempts: int, max_retries: int, now: float,
                 rng: random.Random) -> float | None:
        """When to try again after attempt number `attempts` failed, or None when the job has failed for good."""
        if failure not in RETRYABLE or attempts > max_retries:
            return None
        if failure in IMMEDIATE:
            return now
        return now + self.backoff(attempts, rng)
