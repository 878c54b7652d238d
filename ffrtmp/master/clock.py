"""The clocks of the batch or tick being handled, and when the next dispatch pass is owed.

Two clocks: `wall`, for what is stored and shown; `mono`, the monotonic clock, for every in-memory interval
and deadline, so a wall-clock step changes none of them. Retry backoffs are stored as `steady` time: the
monotonic clock in wall units, fixed to the wall clock when the master starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    wall: float = 0.0
    mono: float = 0.0
    steady_offset: float | None = None
    """wall - mono at the first reading: what turns the monotonic clock into steady time."""

    def set(self, now: float, mono: float | None) -> None:
        """The clocks of what is handled next; `mono` None follows `now` (tests that pin one pin both)."""
        self.wall = now
        self.mono = now if mono is None else mono
        if self.steady_offset is None:
            self.steady_offset = now - self.mono

    @property
    def steady(self) -> float:
        """Monotonic time in wall units (fixed to the wall clock at start): what retry backoffs are stored in."""
        return self.mono + (self.steady_offset or 0.0)


@dataclass
class DispatchDue:
    """Whether a dispatch pass must run at the end of this batch or tick (`dirty`), and the steady time at
    which the next one is owed anyway (a retry's backoff ends then)."""

    dirty: bool = False
    retry_at: float | None = None

    def soon(self) -> None:
        """Something changed that may let a job run: pass at the end of this batch or tick."""
        self.dirty = True

    def at(self, when: float) -> None:
        """Make sure a pass runs at `when` (steady time)."""
        if self.retry_at is None or when < self.retry_at:
            self.retry_at = when

    def reached(self, steady: float) -> bool:
        """True (once) when the owed time has come; the pass is then due now."""
        if self.retry_at is None or steady < self.retry_at:
            return False
        self.retry_at = None
        self.dirty = True
        return True
