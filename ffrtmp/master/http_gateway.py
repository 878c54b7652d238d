"""What an HTTP handler needs of the master: its limits, its errors as HTTP answers, and the Gateway that
hands a request to the master's loop (through the ApiBridge) and waits for the reply or a stream.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffrtmp import defaults
from ffrtmp.client import retry_after
from ffrtmp.errors import InvalidInput, error_from_status
from ffrtmp.master.api_bridge import SENDER_PREFIX, ApiBridge, ReplyPump
from ffrtmp.protocol import NOT_LEADER, Kind, Message, decode, encode

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
        self._pump: ReplyPump | None = None

    def frame(self, op: str, args: dict[str, Any], key: str | None) -> bytes:
        body: dict[str, Any] = {"rid": RID, "op": op, "args": args}
        if key:
            body["key"] = key
        return encode(Kind.REQUEST, body)

    def open(self, on_frame: Callable[[bytes], None]) -> bytes:
        pump = self._pump
        if pump is None:  # made on first use, so in the HTTP thread, whose loop it wakes
            pump = self._pump = ReplyPump(asyncio.get_running_loop().call_soon_threadsafe)
        push = pump.push

        def deliver(frame: bytes) -> None:  # in the master's loop thread: only queues, never waits
            push(on_frame, frame)

        return self.bridge.open(deliver)

    def send(self, route: bytes, frame: bytes, peer: str) -> None:
        if not self.bridge.put(route, frame, SENDER_PREFIX + peer):
            raise ApiError(503, "the master is too busy to take more HTTP requests now; retry in a moment",
                           headers={"Retry-After": "1"})

    def call(self, op: str, args: dict[str, Any], key: str | None, peer: str,
             done: Callable[[Any, ApiError | None], None]) -> Callable[[], None]:
        """Ask the master's loop without a task or a future: `done(body, None)` or `done(None, error)` runs
        once on this thread's loop. Returns a cancel, which drops the route (the client went away)."""
        loop = asyncio.get_running_loop()
        route = b""
        timer: asyncio.TimerHandle | None = None

        def resolve(frame: bytes | None) -> None:
            nonlocal timer
            if timer is None:
                return  # answered (or cancelled) already
            timer.cancel()
            timer = None
            self.bridge.close(route)
            if frame is None:
                done(None, ApiError(503, f"the master did not answer within {self.limits.request_timeout:g}s"))
                return
            try:
                body = answer_of(decode(frame))
            except ApiError as exc:
                done(None, exc)
                return
            done(body, None)

        def cancel() -> None:
            nonlocal timer
            if timer is not None:
                timer.cancel()
                timer = None
                self.bridge.close(route)

        route = self.open(resolve)
        # A timer rather than asyncio.wait_for: no task per request on the hot path.
        timer = loop.call_later(self.limits.request_timeout, resolve, None)
        try:
            self.send(route, self.frame(op, args, key), peer)
        except ApiError:
            cancel()
            raise
        return cancel

    async def ask(self, op: str, args: dict[str, Any], key: str | None, peer: str) -> Any:
        """The operation's reply body, or ApiError with its status."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(body: Any, error: ApiError | None) -> None:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(body)

        cancel = self.call(op, args, key, peer, done)
        try:
            return await future
        finally:
            cancel()


def bearer_key(header: str | None) -> str | None:
    """The API key of an `Authorization: Bearer KEY` header (None when there is no header)."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization: use 'Bearer YOUR-API-KEY'", "Authorization")
    return token.strip()


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: not JSON ({exc})", "body") from None


def submit_args(body: Any, idempotency_key: str | None) -> dict[str, Any]:
    """One job object, a list of them, or `{"jobs": [...], "idempotency_key": ...}` → the submit's args."""
    args: dict[str, Any]
    if isinstance(body, dict) and "jobs" in body:
        args = {"jobs": body["jobs"]}
        if body.get("idempotency_key") is not None:
            args["idempotency_key"] = body["idempotency_key"]
    elif isinstance(body, dict):
        args = {"jobs": [body]}
    elif isinstance(body, list):
        args = {"jobs": body}
    else:
        raise ApiError(400, "body: must be a job object, a list of jobs, or {\"jobs\": [...]}", "body")
    if idempotency_key:
        args["idempotency_key"] = idempotency_key
    return args


def answer_of(message: Message) -> Any:
    if message.kind is not Kind.REPLY:
        raise ApiError(500, f"unexpected {message.kind.value} from the master")
    status = message.body["status"]
    if status != 200:
        raise reply_error(status, str(message.body.get("error", "request failed")))
    return message.body.get("body")
