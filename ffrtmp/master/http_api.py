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
import math
import re
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from ffrtmp import defaults
from ffrtmp.client import retry_after
from ffrtmp.errors import InvalidInput, error_from_status
from ffrtmp.master.api_bridge import SENDER_PREFIX, ApiBridge
from ffrtmp.protocol import NOT_LEADER, Kind, Message, decode, encode

log = logging.getLogger("ffrtmp.master")

RID = "h"
"""Every HTTP request has a route of its own, so one request id serves them all."""
_FORBIDDEN = re.compile(r"^an? \w+ key may not ")
"""The start of auth.Authority.authorize's refusal: over ZeroMQ a 401 like any, over HTTP a 403."""


@dataclass
class ApiLimits:
    max_body: int = defaults.API_MAX_BODY
    max_connections: int = defaults.API_MAX_CONNECTIONS
    idle_timeout: float = defaults.API_IDLE_TIMEOUT
    body_timeout: float = defaults.API_BODY_TIMEOUT
    request_timeout: float = defaults.API_REQUEST_TIMEOUT


class ApiError(Exception):
    """An answer that is not 2xx: its status, the JSON body and any extra headers."""

    def __init__(self, status: int, error: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.headers = status, error, field, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "field": self.field}


def reply_error(status: int, error: str) -> ApiError:
    """The HTTP error for a REPLY's status and message, with the CLI's meaning (docs/protocol.md, "Errors")."""
    headers = {}
    if status in (429, 507):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after(error, 1.0))))
    rebuilt = error_from_status(status, error)  # as the CLI reads it, so the field is the one it would name
    field = rebuilt.field if isinstance(rebuilt, InvalidInput) else None
    if status == 401 and _FORBIDDEN.match(error):
        status = 403  # a valid key whose role lacks the permission (auth.Authority.authorize)
    if status == NOT_LEADER:  # a standby: its message names the leader's address and term; ask there
        headers["Retry-After"] = "1"
    # 507 is the master's "store full"; over HTTP that is 503 Service Unavailable with a Retry-After.
    return ApiError(503 if status in (507, NOT_LEADER) else status, error, field, headers)


class Gateway:
    """What a handler needs: ask the master's loop (one reply, or a stream of frames) as a given client."""

    def __init__(self, bridge: ApiBridge, limits: ApiLimits) -> None:
        self.bridge = bridge
        self.limits = limits

    def frame(self, op: str, args: dict[str, Any], key: str | None) -> bytes:
        body: dict[str, Any] = {"rid": RID, "op": op, "args": args}
        if key:
            body["key"] = key
        return encode(Kind.REQUEST, body)

    def open(self, on_frame: Callable[[bytes], None]) -> bytes:
        loop = asyncio.get_running_loop()

        def deliver(frame: bytes) -> None:  # in the master's loop thread: only schedules, never waits
            loop.call_soon_threadsafe(on_frame, frame)

        return self.bridge.open(deliver)

    def send(self, route: bytes, frame: bytes, peer: str) -> None:
        if not self.bridge.put(route, frame, SENDER_PREFIX + peer):
            raise ApiError(503, "the master is too busy to take more HTTP requests now; retry in a moment",
                           headers={"Retry-After": "1"})

    async def ask(self, op: str, args: dict[str, Any], key: str | None, peer: str) -> Any:
        """The operation's reply body, or ApiError with its status."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()

        def resolve(frame: bytes | None) -> None:
            if not future.done():
                future.set_result(frame)

        route = self.open(resolve)
        # A timer rather than asyncio.wait_for: no task per request on the hot path.
        timer = loop.call_later(self.limits.request_timeout, resolve, None)
        try:
            self.send(route, self.frame(op, args, key), peer)
            raw = await future
        finally:
            timer.cancel()
            self.bridge.close(route)
        if raw is None:
            raise ApiError(503, f"the master did not answer within {self.limits.request_timeout:g}s")
        return answer_of(decode(raw))


def answer_of(message: Message) -> Any:
    if message.kind is not Kind.REPLY:
        raise ApiError(500, f"unexpected {message.kind.value} from the master")
    status = message.body["status"]
    if status != 200:
        raise reply_error(status, str(message.body.get("error", "request failed")))
    return message.body.get("body")


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

    def __init__(self, bridge: ApiBridge, bind: str, port: int, tls: ssl.SSLContext,
                 limits: ApiLimits | None = None) -> None:
        self.bridge = bridge
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
        self._thread = threading.Thread(target=self._run, name="ffrtmp-http-api", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        from ffrtmp.master.http_routes import application

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        app = application(Gateway(self.bridge, self.limits))
        server = _CappedServer(app, ssl_options=self.tls, xheaders=False, decompress_request=False,
                               max_body_size=self.limits.max_body, max_header_size=64 * 1024,
                               idle_connection_timeout=self.limits.idle_timeout,
                               body_timeout=self.limits.body_timeout)
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
