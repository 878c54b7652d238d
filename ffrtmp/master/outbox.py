"""Frames to send once the current transaction commits: a plain queue, never a sender.

The coordinator drains it (`take`) after each commit and sends; what cannot be sent runs its `on_fail` there.
Acknowledgements of RESULTs to one worker are gathered and leave as one frame. A handler that fails is undone
to its `mark`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, encode, encode_batch

OnFail = Callable[[], None]
Frame = tuple[bytes, bytes, OnFail | None]
Probe = Callable[[bytes], bool]


@dataclass(frozen=True)
class Mark:
    """Where the queue stood (frames, and acknowledgements to one route) before a handler ran."""

    route: bytes
    frames: int
    acks: int


@dataclass
class Outbox:
    probe: Probe
    """True while the connection behind a route is up (sends a HEARTBEAT; ROUTER_MANDATORY fails a gone peer)."""
    frames: list[Frame] = field(default_factory=list)
    acks: dict[bytes, list[tuple[Kind, dict[str, Any]]]] = field(default_factory=dict)

    def queue(self, route: bytes, frame: bytes, on_fail: OnFail | None = None) -> None:
        """Send after the current transaction commits; `on_fail` runs (in a new transaction) if it cannot go."""
        self.frames.append((route, frame, on_fail))

    def send(self, route: bytes, kind: Kind, body: dict[str, Any] | None = None) -> None:
        self.queue(route, encode(kind, body))

    def refuse(self, route: bytes, status: int, error: str) -> None:
        self.send(route, Kind.REFUSED, {"status": status, "error": error})

    def cancel(self, route: bytes, job_id: str, attempt: object) -> None:
        """Tell a worker to stop an attempt (`attempt` as the worker named it, even when it is not a number)."""
        self.send(route, Kind.CANCEL, {"job": job_id, "attempt": attempt})

    def ack(self, route: bytes, job_id: str, attempt: int, publish: bool = False) -> None:
        """Acknowledge a RESULT (`publish`: accepted, give the output its final name)."""
        body: dict[str, Any] = {"job": job_id, "attempt": attempt, **({"publish": True} if publish else {})}
        self.acks.setdefault(route, []).append((Kind.ACK, body))

    def mark(self, route: bytes) -> Mark:
        return Mark(route, len(self.frames), len(self.acks.get(route, [])))

    def undo(self, mark: Mark) -> None:
        """Drop what was queued since `mark` (a handler's replies, when the handler failed)."""
        del self.frames[mark.frames:]
        del self.acks.get(mark.route, [])[mark.acks:]

    def clear(self) -> None:
        """A rolled-back transaction: nothing it queued may be sent."""
        self.frames.clear()
        self.acks.clear()

    def take(self) -> list[Frame]:
        """Everything queued, acknowledgements folded into BATCHes per worker (no more items in one than a worker
        accepts); the queue is empty after."""
        for route, acks in self.acks.items():
            for start in range(0, len(acks), MAX_BATCH_ITEMS):
                self.frames.append((route, encode_batch(acks[start:start + MAX_BATCH_ITEMS]), None))
        self.acks = {}
        frames, self.frames = self.frames, []
        return frames
