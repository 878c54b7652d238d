"""Ships job log lines to the master in small batches without ever blocking the worker's loop.

A batch leaves when it reaches `LOG_BATCH_LINES` lines or its oldest line is `LOG_BATCH_SECONDS` old.
When the socket cannot take it (no connection), lines stay spooled up to a bound; beyond it the oldest are
dropped, counted, and a marker line says how many, so a gap is never silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ffrtmp import defaults
from ffrtmp.protocol import Kind, encode

Line = tuple[int, float, str, str]
SPOOL_LIMIT = 20_000
MAX_LINE = 8192


class LogShipper:
    def __init__(self, send: Callable[[bytes], bool], *, max_lines: int = defaults.LOG_BATCH_LINES,
                 max_age: float = defaults.LOG_BATCH_SECONDS, spool_limit: int = SPOOL_LIMIT) -> None:
        self.send = send
        self.max_lines = max_lines
        self.max_age = max_age
        self.spool_limit = max(2, spool_limit)
        self.buffers: dict[tuple[str, int], list[Line]] = {}
        self.first_at: dict[tuple[str, int], float] = {}
        self.dropped = 0
        self.gaps: dict[tuple[str, int], int] = {}
        """Lines dropped from each spool since it last drained; its head is then a marker line."""

    def add(self, job: str, attempt: int, line: Line, now: float | None = None) -> None:
        key = (job, attempt)
        buffer = self.buffers.setdefault(key, [])
        if not buffer:
            self.first_at[key] = time.monotonic() if now is None else now
        seq, at, stream, text = line
        buffer.append((seq, at, stream, text[:MAX_LINE]))
        if len(buffer) > self.spool_limit:
            # Drop the oldest lines, keeping one marker line at the head that counts this gap.
            body = buffer[1:] if key in self.gaps else buffer
            drop = len(body) - (self.spool_limit - 1)
            self.gaps[key] = self.gaps.get(key, 0) + drop
            self.dropped += drop
            kept = body[drop:]
            marker = (kept[0][0] - 1, kept[0][1], "worker",
                      f"[ffrtmp: {self.gaps[key]} log lines dropped, spool full]")
            self.buffers[key] = [marker, *kept]
        elif len(buffer) >= self.max_lines:
            self._ship(key)

    def due_in(self, now: float) -> float:
        if not self.first_at:
            return math.inf
        return max(0.0, min(self.first_at.values()) + self.max_age - now)

    def flush(self, now: float) -> None:
        for key, first in list(self.first_at.items()):
            if now - first >= self.max_age:
                self._ship(key)

    def flush_job(self, job: str, attempt: int) -> None:
        if (job, attempt) in self.buffers:
            self._ship((job, attempt))

    def pending(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def _ship(self, key: tuple[str, int]) -> None:
        buffer = self.buffers.get(key)
        if not buffer:
            self.buffers.pop(key, None)
            self.first_at.pop(key, None)
            return
        while buffer:
            batch = buffer[: self.max_lines]
            body: dict[str, Any] = {"job": key[0], "attempt": key[1], "lines": [list(line) for line in batch]}
            if not self.send(encode(Kind.LOG, body)):
                return  # keep the rest spooled; the next flush tries again
            del buffer[: self.max_lines]
            self.gaps.pop(key, None)  # the marker has left; a new gap starts a new count
        self.buffers.pop(key, None)
        self.first_at.pop(key, None)
