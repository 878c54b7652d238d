"""`POST /api/jobs`, the API's hot path, answered at Tornado's HTTP layer, beside tornado.web for the rest.

Tornado's HTTP1Connection still parses the request and enforces the header and body caps (the read
timeouts are http_deadlines.py's, for every endpoint); only
tornado.web's RequestHandler (routing, a handler object, a task and a future per request) is left out, which
was most of the HTTP thread's time per submit (docs/benchmarks.md, "HTTP API"). This is the endpoint's only
implementation: tornado.web never sees a `POST /api/jobs`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable
from email.utils import formatdate
from typing import Any

import tornado.httputil
import tornado.web

from ffrtmp.master.http_deadlines import ReadDeadlines
from ffrtmp.master.http_gateway import ApiError, Gateway, bearer_key, json_body, submit_args

log = logging.getLogger("ffrtmp.master")

PATH = "/api/jobs"
_BASE_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_REASONS = {201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


class _Date:
    """The Date header, formatted once a second rather than per response."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, formatdate(second, usegmt=True)
        return cls.text


class SubmitRequest(tornado.httputil.HTTPMessageDelegate):
    """One `POST /api/jobs`: the body's jobs to the master's loop as a `submit`, its reply as 201 or the error."""

    def __init__(self, gateway: Gateway, connection: tornado.httputil.HTTPConnection,
                 headers: tornado.httputil.HTTPHeaders, peer: str) -> None:
        self.gateway, self.connection, self.headers, self.peer = gateway, connection, headers, peer
        self.chunks: list[bytes] = []
        self.cancel: Any = None
        self.answered = False

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)  # HTTP1Connection has checked the size against the body cap already

    def finish(self) -> None:
        try:
            key = bearer_key(self.headers.get("Authorization"))
            args = submit_args(json_body(b"".join(self.chunks)), self.headers.get("Idempotency-Key"))
            self.cancel = self.gateway.call("submit", args, key, self.peer, self.answer)
        except ApiError as exc:
            self.answer(None, exc)
        except Exception:
            log.exception("POST %s failed", PATH)
            self.answer(None, ApiError(500, "internal error in the master (see its log)"))

    def on_connection_close(self) -> None:
        self.answered = True  # nothing can be written now; the master's reply is dropped with the route
        if self.cancel is not None:
            self.cancel()

    def answer(self, body: Any, error: ApiError | None) -> None:
        if self.answered:
            return
        self.answered = True
        headers = tornado.httputil.HTTPHeaders(_BASE_HEADERS)
        status = 201
        if error is not None:
            status, body = error.status, error.body()
            for name, value in error.headers.items():
                headers[name] = value
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="ffrtmp"'
        data = json.dumps(body, separators=(",", ":")).encode()
        headers["Content-Length"] = str(len(data))
        headers["Date"] = _Date.now()
        start = tornado.httputil.ResponseStartLine("HTTP/1.1", status, _REASONS.get(status, "Error"))
        self.connection.write_headers(start, headers, data)
        self.connection.finish()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http %d POST %s (%s)", status, PATH, self.peer)


class _Forward(tornado.httputil.HTTPMessageDelegate):
    """Picks the request's handler once its start line is known: SubmitRequest, or tornado.web's own."""

    def __init__(self, app: tornado.web.Application, gateway: Gateway, server: object,
                 connection: tornado.httputil.HTTPConnection, deadlines: ReadDeadlines) -> None:
        self.app, self.gateway, self.server, self.connection = app, gateway, server, connection
        self.target: tornado.httputil.HTTPMessageDelegate | None = None
        self.deadlines = deadlines
        deadlines.awaiting_headers(connection)  # made as the connection starts to wait for a request

    def headers_received(self, start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
                         headers: tornado.httputil.HTTPHeaders) -> Awaitable[None] | None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        self.deadlines.awaiting_body(self.connection)
        if start_line.method == "POST" and start_line.path.partition("?")[0] == PATH:
            context = getattr(self.connection, "context", None)
            peer = getattr(context, "remote_ip", None) or "?"
            self.target = SubmitRequest(self.gateway, self.connection, headers, peer)
            return None
        self.target = self.app.start_request(self.server, self.connection)
        return self.target.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.target is not None
        return self.target.data_received(chunk)

    def finish(self) -> None:
        assert self.target is not None
        self.deadlines.done(self.connection)
        self.target.finish()

    def on_connection_close(self) -> None:
        self.deadlines.done(self.connection)
        if self.target is not None:
            self.target.on_connection_close()


class ApiServerDelegate(tornado.httputil.HTTPServerConnectionDelegate):
    """What the HTTPServer serves: the submit fast path, then the tornado.web application."""

    def __init__(self, app: tornado.web.Application, gateway: Gateway, deadlines: ReadDeadlines) -> None:
        self.app, self.gateway, self.deadlines = app, gateway, deadlines

    def start_request(self, server_conn: object,
                      request_conn: tornado.httputil.HTTPConnection) -> tornado.httputil.HTTPMessageDelegate:
        return _Forward(self.app, self.gateway, server_conn, request_conn, self.deadlines)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)
