"""How a worker stops (SIGTERM, Ctrl-C, `nodes drain`): a plan with two deadlines, decided on a clock passed in.

1. Draining: no new jobs; running attempts get up to `drain_timeout` to finish, then they are stopped.
2. Delivering: once nothing runs, unacknowledged results get up to `deliver_timeout` to be acknowledged
   (the master may be restarting). After that the worker exits anyway, keeping those results on disk.
A second request to stop skips both: attempts are stopped at once and the worker exits within `FORCE_WAIT`.
Without this bound a worker whose master had gone waited for an acknowledgement forever (issue 20).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ffrtmp.worker.runner import Attempt

FORCE_WAIT = 1.0
"""After a second stop request: how long stopped attempts get to report before the worker exits anyway."""


class Verdict(Enum):
    DRAINED = "drained"
    """Nothing runs and every result was acknowledged."""
    UNDELIVERED = "undelivered"
    """Nothing runs (or a forced stop), but some results were never acknowledged."""


@dataclass
class StopPlan:
    drain_timeout: float
    deliver_timeout: float
    started: float | None = None
    """Monotonic time the drain began, or None while the worker is not stopping."""
    forced_at: float | None = None
    idle_since: float | None = None
    """When the last running attempt ended, during the drain."""

    @property
    def stopping(self) -> bool:
        return self.started is not None

    def request(self, now: float) -> bool:
        """A stop request: the first begins the drain, the next forces the stop. True when it began the drain."""
        if self.started is None:
            self.started = now
            return True
        if self.forced_at is None:
            self.forced_at = now
        return False

    def attempts_overdue(self, now: float) -> bool:
        """True when running attempts must be stopped: the drain timeout passed, or the stop was forced."""
        if self.started is None:
            return False
        return self.forced_at is not None or now - self.started > self.drain_timeout

    def verdict(self, now: float, running: int, undelivered: int) -> Verdict | None:
        """Whether to exit now, and how; None while the worker goes on."""
        if self.started is None:
            return None
        forced_out = self.forced_at is not None and now - self.forced_at >= FORCE_WAIT
        if running:
            self.idle_since = None
            return Verdict.UNDELIVERED if forced_out else None
        if self.idle_since is None:
            self.idle_since = now
        if not undelivered:
            return Verdict.DRAINED
        if forced_out or now - self.idle_since >= self.deliver_timeout:
            return Verdict.UNDELIVERED
        return None

    def due_in(self, now: float) -> float:
        """Seconds until the next deadline of the plan (for the loop's poll)."""
        if self.started is None:
            return math.inf
        due = [self.started + self.drain_timeout]
        if self.forced_at is not None:
            due.append(self.forced_at + FORCE_WAIT)
        if self.idle_since is not None:
            due.append(self.idle_since + self.deliver_timeout)
        ahead = [at for at in due if at > now]
        return min(ahead) - now if ahead else math.inf


def exit_line(head: str, results: list[tuple[str, int, str]], running: list[tuple[str, int]], master: str,
              kept: str) -> str:
    """The exit line of a stop that could not hand everything over: what was left, and where it is kept."""
    def listing(items: list[str]) -> str:
        return "; ".join(items[:10]) + (f"; and {len(items) - 10} more" if len(items) > 10 else "")

    parts = [head]
    if results:
        named = listing([f"job {job} attempt {number} {status}" for job, number, status in results])
        parts.append(f"{len(results)} results not acknowledged by {master}: {named}; {kept}")
    if running:
        named = listing([f"job {job} attempt {number}" for job, number in running])
        parts.append(f"{len(running)} attempts killed before they reported: {named}")
    return "; ".join(parts)


def end_attempts(attempts: list[Attempt], wait: float, mono: Callable[[], float]) -> None:
    """Stop every attempt, give them `wait` seconds in all, then SIGKILL the process groups still there.

    An engine runs in its own session, so a worker that exits without this would leave it running.
    """
    for attempt in attempts:
        attempt.cancel_reason = "worker shutting down"
        attempt.cancel.set()
    deadline = mono() + wait
    for attempt in attempts:
        if attempt.thread is None:
            continue
        attempt.thread.join(timeout=max(0.0, deadline - mono()))
        if attempt.pid is not None and attempt.thread.is_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(attempt.pid, signal.SIGKILL)
            attempt.thread.join(timeout=1.0)
