"""Why a requirement group waits: its reason is written onto its pending jobs a chunk at a time.

A group no free node can take gets one reason (from placement). Writing it over 200,000 waiting jobs in one
pass would hold the loop, so each pass writes a chunk of seqs, and an idle master writes nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NEEDS_REASON_REFRESH = 60.0
"""Seconds after which a waiting group's reason is written for all its jobs again (retried jobs rejoin it)."""
NEEDS_REASON_CHUNK = 5000
"""Job seqs one pass writes a group's reason over, at most: a new reason for 200,000 jobs is written over
40 passes of a few ms, not in one that holds the loop for half a second."""


@dataclass
class NeedsReasons:
    """For each requirement group no free node could take: its wait reason, the seq up to which every job of
    the group has it, and when that reason was first written (monotonic). A new reason is written from the
    oldest pending job on, a chunk of seqs per pass; then only jobs submitted since are (an idle master with
    200,000 waiting jobs writes nothing)."""

    written: dict[str, tuple[str, int, float]] = field(default_factory=dict)

    def next_range(self, needs: str, reason: str, first_seq: int, last_seq: int,
                   mono: float) -> tuple[int, int] | None:
        """The seqs (above, up to) to write the reason for in this pass; None when all have it."""
        last = self.written.get(needs)
        if last is None or last[0] != reason or mono - last[2] >= NEEDS_REASON_REFRESH:
            last = (reason, first_seq - 1, mono)
        upto = min(last_seq, last[1] + NEEDS_REASON_CHUNK)
        self.written[needs] = (reason, max(upto, last[1]), last[2])
        if len(self.written) > 10_000:  # many groups come and go: forget the others (they are rewritten)
            self.written = {needs: self.written[needs]}
        return (last[1], upto) if upto > last[1] else None

    def unfinished(self, last_seq: int) -> bool:
        return any(upto < last_seq for _, upto, _ in self.written.values())
