"""Jobs that ended, per minute and tenant, for the sparklines of `ffrtmp top`.

Kept in memory and filled again from the store's history when the master starts, so that a restart does not
blank them. A tenant's key sees its own tenant's jobs only; an admin sees all.
"""

from __future__ import annotations

ALL = None
"""The key of the cluster-wide counts."""


class Activity:
    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self.counts: dict[str | None, dict[int, list[int]]] = {}
        """Per tenant (and ALL): minute → [completed, failed], for the minutes that saw a job end."""
        self.newest = 0

    def record(self, status: str, now: float, tenant: str = "") -> None:
        if status not in ("completed", "failed"):
            return
        minute = int(now // 60)
        if minute > self.newest:
            self.newest = minute
            self._forget_before(minute - self.minutes + 1)
        elif minute <= self.newest - self.minutes:
            return  # older than the window (restored from the store, or a worker's clock far behind)
        for key in (ALL, tenant):
            self.counts.setdefault(key, {}).setdefault(minute, [0, 0])[0 if status == "completed" else 1] += 1

    def _forget_before(self, oldest: int) -> None:
        for minutes in self.counts.values():
            for minute in [m for m in minutes if m < oldest]:
                del minutes[minute]

    def series(self, now: float, minutes: int = 15, tenant: str | None = ALL) -> dict[str, list[int]]:
        """Completed and failed counts for each of the last `minutes` minutes (the current one last)."""
        last = int(now // 60)
        counts = self.counts.get(tenant, {})
        span = range(last - minutes + 1, last + 1)
        return {"completed": [counts[m][0] if m in counts else 0 for m in span],
                "failed": [counts[m][1] if m in counts else 0 for m in span]}
