"""The master's HTTPS JSON API: a Tornado server in its own thread, beside the ZeroMQ loop.

Tornado (asyncio, pure Python) keeps thousands of idle keep-alive connections for a few KiB each, streams
Server-Sent Events without a thread per follower, and bounds every connection (header and body size, body
and idle timeouts); a connection cap is added here. Each request is handed to the master's loop through the
ApiBridge as the REQUEST a ZeroMQ client would send, so the loop's code alone decides what it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.master.api_bridge import ApiBridge
from ffrtmp.master.filedesk import FileDesk
from ffrtmp.master.http_app import application
from ffrtmp.master.http_deadlines import ReadDeadlines
from ffrtmp.master.http_gateway import ApiLimits, Gateway
from ffrtmp.master.http_submit import ApiServerDelegate

log = logging.getLogger("ffrtmp.master")

class _CappedServer(tornado.httpserver.HTTPServer):
    """Refuses connections past `max_connections` at once (closing them), so a flood costs a socket, not state."""

    max_connections = defaults.API_MAX_CONNECTIONS
    refused = 0

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(getattr(self, "_connections", ())) >= self.max_connections:
            type(self).refused += 1
            stream.close()
            return
        super().handle_stream(stream, address)


def _raise_open_files(wanted: int) -> None:
    """Every connection is a file descriptor: lift the soft limit towards the hard one (no privilege needed)."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class HttpApi:
    """Binds at construction (so a taken port fails the master's start with one line), serves after `start`."""

    def __init__(self, bridge: ApiBridge, bind: str, port: int, tls: ssl.SSLContext | None,
                 limits: ApiLimits | None = None, files: Callable[[], FileDesk | None] | None = None) -> None:
        self.bridge = bridge
        self.files = files
        """The master's file desk now, for the file endpoints (None: it has no file store)."""
        self.limits = limits or ApiLimits()
        self.tls = tls
        _raise_open_files(self.limits.max_connections + 1024)
        try:
            self.sockets = tornado.netutil.bind_sockets(port, bind, family=socket.AF_INET, backlog=1024)
        except OSError as exc:
            raise InvalidInput("api-port", f"cannot listen on {bind}:{port}: {exc.strerror} "
                               "(is another master using it? --api-port 0 turns the HTTP API off)") from None
        self.port: int = self.sockets[0].getsockname()[1]
        self.bind = bind
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _CappedServer | None = None
        self.deadlines: ReadDeadlines | None = None
        self._thread = threading.Thread(target=self._run, name="ffrtmp-http-api", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        gateway = Gateway(self.bridge, self.limits)
        deadlines = ReadDeadlines(self.limits.idle_timeout, self.limits.body_timeout)
        app = application(gateway, self.files, deadlines)
        server = _CappedServer(ApiServerDelegate(app, gateway, deadlines), ssl_options=self.tls,
                               xheaders=False, decompress_request=False,
                               max_body_size=self.limits.max_body, max_header_size=64 * 1024)
        # The read timeouts are ReadDeadlines' one sweep, not a `gen.with_timeout` per read (http_deadlines.py).
        server.conn_params.header_timeout = None
        server.conn_params.body_timeout = None
        deadlines.start(loop)
        self.deadlines = deadlines
        server.max_connections = self.limits.max_connections
        server.add_sockets(self.sockets)
        self._server = server
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            for sock in self.sockets:
                sock.close()
            return

        async def shut() -> None:
            server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.close_all_connections(), 2.0)
            loop.stop()

        with contextlib.suppress(RuntimeError):  # the loop is already closed
            asyncio.run_coroutine_threadsafe(shut(), loop)
        self._thread.join(5)
