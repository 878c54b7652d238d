"""Ships job log lines to the master in small batches without ever blocking the worker's loop.

A batch leaves when it reaches `LOG_BATCH_LINES` lines or its oldest line is `LOG_BATCH_SECONDS` old.
A line counts as delivered only when the master acknowledges it (the highest `seq` it stored per attempt,
on its heartbeat replies): a frame ZeroMQ has merely queued is lost when the connection is replaced. So
every line stays in a bounded spool until acknowledged, and after a reconnect (once the master has
welcomed us again) the whole spool is sent again; the master ignores the lines it already has. Beyond
the bound the oldest lines are dropped, counted, and a marker line says how many, so a gap is never silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ffrtmp import defaults
from ffrtmp.protocol import Kind, encode

Line = tuple[int, float, str, str]
Key = tuple[str, int]
SPOOL_LIMIT = 20_000
MAX_LINE = 8192
RESEND_AFTER = 10.0
"""Lines sent this long ago with no acknowledgement since are sent again (an acknowledgement can be lost)."""


@dataclass
class Spool:
    """One attempt's unacknowledged lines, oldest first; the first `sent` of them are on their way."""

    lines: list[Line] = field(default_factory=list)
    sent: int = 0
    gap: int = 0
    """Lines dropped since the marker at the head was made (0: no marker at the head)."""


class LogShipper:
    def __init__(self, send: Callable[[bytes], bool] | None = None, *, max_lines: int = defaults.LOG_BATCH_LINES,
                 max_age: float = defaults.LOG_BATCH_SECONDS, spool_limit: int = SPOOL_LIMIT,
                 resend_after: float = RESEND_AFTER,
                 send_message: Callable[[Kind, dict[str, Any]], bool] | None = None) -> None:
        """`send` takes encoded frames; `send_message` (the worker core's way) takes the kind and body."""
        if send_message is None:
            if send is None:
                raise ValueError("LogShipper needs send or send_message")
            frames = send
            send_message = lambda kind, body: frames(encode(kind, body))  # noqa: E731
        self.send_message = send_message
        self.resend_after = resend_after
        self.max_lines = max_lines
        self.max_age = max_age
        self.spool_limit = max(2, spool_limit)
        self.spools: dict[Key, Spool] = {}
        self.first_at: dict[Key, float] = {}
        """When the oldest line not yet sent was added, per attempt that has such lines."""
        self.waiting_since: dict[Key, float] = {}
        """Since when sent lines of an attempt have waited for an acknowledgement with none coming."""
        self.dropped = 0
        self.online = True
        """False from a new connection until the master welcomes us: a LOG before HELLO would be dropped."""

    def add(self, job: str, attempt: int, line: Line, now: float | None = None) -> None:
        key = (job, attempt)
        spool = self.spools.setdefault(key, Spool())
        if key not in self.first_at:
            self.first_at[key] = time.monotonic() if now is None else now
        seq, at, stream, text = line
        spool.lines.append((seq, at, stream, text[:MAX_LINE]))
        if len(spool.lines) > self.spool_limit:
            self._overflow(spool)
        if len(spool.lines) - spool.sent >= self.max_lines:
            self._ship(key)

    def _overflow(self, spool: Spool) -> None:
        """Drop the oldest lines, keeping one marker line at the head that counts this gap."""
        marked = spool.gap > 0
        body = spool.lines[1:] if marked else spool.lines
        sent = max(0, spool.sent - (1 if marked and spool.sent else 0))
        # A few at once beyond the bound, so a long outage costs a copy of the spool per hundredth, not per line.
        drop = len(body) - (self.spool_limit - 1) + self.spool_limit // 100
        spool.gap += drop
        self.dropped += drop
        kept = body[drop:]
        marker = (kept[0][0] - 1, kept[0][1], "worker", f"[ffrtmp: {spool.gap} log lines dropped, spool full]")
        spool.lines = [marker, *kept]
        # Only sent lines dropped: they may still arrive, and the marker is needed only if they are resent
        # (the master ignores it then when it has them). Unsent lines dropped: the marker must go out first.
        left = sent - drop
        spool.sent = left + 1 if left > 0 else 0

    def ack(self, job: str, attempt: int, seq: int) -> None:
        """The master has stored (or deliberately ignored) this attempt's lines up to `seq`."""
        key = (job, attempt)
        spool = self.spools.get(key)
        if spool is None:
            return
        done = 0
        while done < len(spool.lines) and spool.lines[done][0] <= seq:
            done += 1
        if not done:
            return
        if spool.gap:
            spool.gap = 0  # the marker has been stored: a new gap starts a new count
        del spool.lines[:done]
        spool.sent = max(0, spool.sent - done)
        self.waiting_since.pop(key, None)
        if not spool.lines:
            del self.spools[key]
            self.first_at.pop(key, None)

    def pause(self) -> None:
        """A new connection: hold everything until the master welcomes us."""
        self.online = False

    def resend(self, now: float) -> None:
        """Welcomed (again): whatever was sent on an earlier connection may be gone, so send it all again."""
        self.online = True
        self.waiting_since.clear()
        for key, spool in self.spools.items():
            spool.sent = 0
            self.first_at[key] = now - self.max_age
        self.flush(now)

    def due_in(self, now: float) -> float:
        if not self.first_at or not self.online:
            return math.inf
        return max(0.0, min(self.first_at.values()) + self.max_age - now)

    def flush(self, now: float) -> None:
        for key, spool in self.spools.items():
            if not spool.sent or not self.online:
                continue
            since = self.waiting_since.setdefault(key, now)
            if now - since >= self.resend_after:
                spool.sent = 0
                self.first_at[key] = now - self.max_age
                self.waiting_since[key] = now
        for key, first in list(self.first_at.items()):
            if now - first >= self.max_age:
                self._ship(key)

    def flush_job(self, job: str, attempt: int) -> None:
        if (job, attempt) in self.spools:
            self._ship((job, attempt))

    def pending(self) -> int:
        """Lines not yet acknowledged."""
        return sum(len(spool.lines) for spool in self.spools.values())

    def unsent(self) -> int:
        return sum(len(spool.lines) - spool.sent for spool in self.spools.values())

    def _ship(self, key: Key) -> None:
        if not self.online:
            return
        spool = self.spools[key]
        while spool.sent < len(spool.lines):
            batch = spool.lines[spool.sent: spool.sent + self.max_lines]
            body: dict[str, Any] = {"job": key[0], "attempt": key[1], "lines": [list(line) for line in batch]}
            if not self.send_message(Kind.LOG, body):
                return  # keep the rest spooled; the next flush tries again
            spool.sent += len(batch)
        self.first_at.pop(key, None)
