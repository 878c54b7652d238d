"""The HTTP API's read deadlines (idle keep-alive, slow headers, slow bodies), checked by one sweep a few
times a second instead of a timer per read.

Tornado wraps every header and body read in `gen.with_timeout` (a timeout, a future and a callback each):
12 % of the HTTP thread's time per submit. Here a request being read has one deadline in a dict: the whole
header block within `idle_timeout` from the moment the connection waits for a request (so a slow-loris
client trickling bytes is cut like an idle one, as Tornado's header timeout does), and the whole body within
`body_timeout` after its headers. A connection past its deadline is closed.
"""

from __future__ import annotations

import asyncio
import time

import tornado.httputil


class ReadDeadlines:
    def __init__(self, idle_timeout: float, body_timeout: float) -> None:
        self.idle_timeout, self.body_timeout = idle_timeout, body_timeout
        self.period = max(0.05, min(1.0, idle_timeout / 4, body_timeout / 4))
        """Seconds between sweeps: a deadline is enforced at most this late."""
        self._reading: dict[tornado.httputil.HTTPConnection, float] = {}
        self.closed = 0

    def awaiting_headers(self, connection: tornado.httputil.HTTPConnection) -> None:
        self._reading[connection] = time.monotonic() + self.idle_timeout

    def awaiting_body(self, connection: tornado.httputil.HTTPConnection) -> None:
        self._reading[connection] = time.monotonic() + self.body_timeout

    def done(self, connection: tornado.httputil.HTTPConnection) -> None:
        """The request is read (or the connection gone): answering it is the request timeout's business."""
        self._reading.pop(connection, None)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        def sweep() -> None:
            self.sweep(time.monotonic())
            loop.call_later(self.period, sweep)

        loop.call_later(self.period, sweep)

    def sweep(self, now: float) -> None:
        late = [connection for connection, deadline in self._reading.items() if deadline <= now]
        for connection in late:
            self._reading.pop(connection, None)
            self.closed += 1
            connection.close()  # type: ignore[attr-defined]  # HTTP1Connection: closes the stream
