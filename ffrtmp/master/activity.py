"""Jobs that ended, per minute, kept in memory for the sparklines of `ffrtmp top`."""

from __future__ import annotations

from collections import deque


class Activity:
    def __init__(self, minutes: int = 60) -> None:
        self.minutes = minutes
        self.buckets: deque[list[int]] = deque()
        """[minute, completed, failed] per minute that saw any job end, oldest first."""

    def record(self, status: str, now: float) -> None:
        minute = int(now // 60)
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append([minute, 0, 0])
            while self.buckets and self.buckets[0][0] <= minute - self.minutes:
                self.buckets.popleft()
        if status == "completed":
            self.buckets[-1][1] += 1
        elif status == "failed":
            self.buckets[-1][2] += 1

    def series(self, now: float, minutes: int = 15) -> dict[str, list[int]]:
        """Completed and failed counts for each of the last `minutes` minutes (the current one last)."""
        last = int(now // 60)
        counts = {bucket[0]: bucket for bucket in self.buckets}
        span = range(last - minutes + 1, last + 1)
        return {"completed": [counts[m][1] if m in counts else 0 for m in span],
                "failed": [counts[m][2] if m in counts else 0 for m in span]}
