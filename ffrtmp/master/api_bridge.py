"""The HTTP API's way into the master's loop: each HTTP request becomes one REQUEST frame, as a ZeroMQ client
would send it, on a thread-safe queue the loop drains beside its socket; replies come back by route.

So authentication, roles, tenants, rate limits, degraded mode and every operation are the very code the
ZeroMQ clients go through (client_gate.on_request); only the transport differs. The loop never waits on HTTP:
`put` and `deliver` only append, write one byte to a pipe, or call a callback that itself only schedules work
on the HTTP thread's event loop.

Hand-offs are batched both ways: `put` wakes the loop only when the queue was empty (the loop drains it all
at once), and a ReplyPump wakes the HTTP thread once for all the replies a loop turn sends. At thousands of
requests a second, a pipe write per request and a `call_soon_threadsafe` per reply were a syscall and a GIL
hand-over each.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

from ffrtmp import defaults

log = logging.getLogger("ffrtmp.master")

ROUTE_PREFIX = b"\xffhttp"
"""ZeroMQ's own routing ids start with a zero byte, so no ROUTER peer has a route like this."""
SENDER_PREFIX = "http:"
"""The sender of an HTTP frame is `http:<client address>`; a CURVE key (Z85) never contains a colon."""

Deliver = Callable[[bytes], None]
"""Called in the loop's thread with each frame for one route; must not block."""


def is_http_sender(sender: str | None) -> bool:
    return sender is not None and sender.startswith(SENDER_PREFIX)


class ApiBridge:
    def __init__(self, max_pending: int = defaults.API_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._inbox: collections.deque[tuple[bytes, bytes, str]] = collections.deque()
        self._routes: dict[bytes, Deliver] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.last_turn = time.monotonic()
        """When the loop last drained the queue (monotonic): /health reports a loop stuck past a few seconds."""

    def fileno(self) -> int:
        """Readable while requests wait: the loop polls it beside its ZeroMQ socket."""
        return self._wake_read

    # ---- the HTTP thread's side ------------------------------------------------------------------

    def open(self, deliver: Deliver) -> bytes:
        """A new route whose replies go to `deliver` until `close(route)`."""
        with self._lock:
            route = ROUTE_PREFIX + next(self._ids).to_bytes(8, "big")
        self._routes[route] = deliver
        return route

    def close(self, route: bytes) -> None:
        """The HTTP side is done with `route`: later frames for it fail to send (a follower is dropped)."""
        self._routes.pop(route, None)

    def put(self, route: bytes, frame: bytes, sender: str) -> bool:
        """Queue one REQUEST frame for the loop; False when too many wait already (the caller answers 503)."""
        with self._lock:
            waiting = len(self._inbox)
            if waiting >= self.max_pending:
                return False
            self._inbox.append((route, frame, sender))
        if not waiting:  # otherwise the loop was woken for the first one and takes this one with it
            with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop is woken already
                os.write(self._wake_write, b"!")
        return True

    # ---- the loop's side -------------------------------------------------------------------------

    def take(self, limit: int) -> list[tuple[bytes, bytes, str]]:
        """Up to `limit` queued frames, oldest first, without waiting."""
        self.last_turn = time.monotonic()
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_read, 65536)
        with self._lock:
            batch = [self._inbox.popleft() for _ in range(min(limit, len(self._inbox)))]
            if self._inbox:  # more than one turn's worth: stay readable so the loop comes back at once
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_write, b"!")
        return batch

    def owns(self, route: bytes) -> bool:
        return route.startswith(ROUTE_PREFIX)

    def deliver(self, route: bytes, frame: bytes) -> bool:
        """Hand one reply frame to its HTTP request; False when that request is gone (as a vanished peer)."""
        deliver = self._routes.get(route)
        if deliver is None:
            return False
        deliver(frame)
        return True

    def shutdown(self) -> None:
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


class ReplyPump:
    """Carries reply frames from the master's loop to callbacks on the HTTP thread's asyncio loop, waking it
    once per burst: the first frame schedules a drain, the ones pushed before it runs ride along."""

    def __init__(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        self._schedule = schedule  # the HTTP loop's call_soon_threadsafe
        self._frames: collections.deque[tuple[Deliver, bytes]] = collections.deque()
        self._scheduled = False

    def push(self, deliver: Deliver, frame: bytes) -> None:
        """In the master's loop thread: never blocks, never runs `deliver` itself."""
        self._frames.append((deliver, frame))  # appended before the flag is read: a drain cannot miss it
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self._drain)

    def _drain(self) -> None:
        self._scheduled = False  # cleared before popping: a frame pushed after the last pop schedules anew
        frames = self._frames
        while frames:
            deliver, frame = frames.popleft()
            try:
                deliver(frame)
            except Exception:  # one request's fault: the replies behind it are still delivered now
                log.exception("an HTTP reply could not be delivered")
