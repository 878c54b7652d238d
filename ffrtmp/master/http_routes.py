"""The HTTP API's endpoints: each turns an HTTP request into one client operation (operations.py) and its reply
into JSON; `GET /api/jobs/{id}/logs?follow=1` streams the operation's PARTIALs as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import tornado.iostream
import tornado.web

from ffrtmp import __version__
from ffrtmp.errors import InvalidInput
from ffrtmp.master.http_gateway import ApiError, Gateway, answer_of, bearer_key
from ffrtmp.master.openapi import document
from ffrtmp.protocol import Kind, decode
from ffrtmp.recommend import request_args

HEALTH_STALE = 5.0
"""Seconds without a loop turn after which /health says the master is stuck (503)."""
log = logging.getLogger("ffrtmp.master")

FOLLOW_SILENCE = 10.0
"""A follow that hears nothing (the master sends a keep-alive every second) this long ends with an error event."""
FOLLOW_BACKLOG = 2000
"""Frames a follower may leave unread before it is dropped (a client that stopped reading)."""


class Base(tornado.web.RequestHandler):
    gateway: Gateway

    def initialize(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self) -> None:
        return None  # answers change with every request: hashing each body buys nothing

    def reply(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":")))

    def fail(self, exc: ApiError) -> None:
        for name, value in exc.headers.items():
            self.set_header(name, value)
        if exc.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="ffrtmp"')
        self.reply(exc.body(), exc.status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason if status_code != 500 else "internal error in the master (see its log)"
        self.finish(json.dumps({"error": reason, "field": None}))

    def key(self) -> str | None:
        return bearer_key(self.request.headers.get("Authorization"))

    async def ask(self, op: str, args: dict[str, Any]) -> Any:
        return await self.gateway.ask(op, args, self.key(), self.request.remote_ip or "?")

    def query_int(self, name: str) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"{name}: must be a whole number", name) from None

    def query_number(self, name: str) -> float | None:
        raw = self.query_str(name)
        if raw is None:
            return None
        try:
            number = float(raw)
        except ValueError:
            raise ApiError(400, f"{name}: must be a number", name) from None
        if not math.isfinite(number):
            raise ApiError(400, f"{name}: must be a finite number", name)
        return number

    def query_flag(self, name: str) -> bool | None:
        raw = self.query_str(name)
        if raw is None:
            return None
        if raw not in ("0", "1", "true", "false"):
            raise ApiError(400, f"{name}: must be 0, 1, true or false", name)
        return raw in ("1", "true")

    def query_str(self, name: str) -> str | None:
        return self.get_query_argument(name, None) or None

    async def run(self, op: str, args: dict[str, Any], status: int = 200) -> None:
        try:
            self.reply(await self.ask(op, args), status)
        except ApiError as exc:
            self.fail(exc)


class Health(Base):
    def get(self) -> None:
        stale = time.monotonic() - self.gateway.bridge.last_turn
        if stale > HEALTH_STALE:
            self.reply({"status": "stuck", "version": __version__, "loop_silent_s": round(stale, 1)}, 503)
        else:
            self.reply({"status": "ok", "version": __version__})


class OpenApi(Base):
    def get(self) -> None:
        self.reply(document())


class Jobs(Base):
    async def get(self) -> None:
        try:
            args = {"status": self.query_str("status"), "queue": self.query_str("queue"),
                    "node": self.query_str("node"), "limit": self.query_int("limit"),
                    "cursor": self.query_int("cursor")}
        except ApiError as exc:
            return self.fail(exc)
        await self.run("list", {k: v for k, v in args.items() if v is not None})

    # POST /api/jobs is answered before this class is reached: http_submit.py.


class Job(Base):
    async def get(self, job_id: str) -> None:
        await self.run("get", {"id": job_id})


class JobAction(Base):
    async def post(self, job_id: str, action: str) -> None:
        await self.run(action, {"id": job_id})


class Nodes(Base):
    async def get(self) -> None:
        await self.run("nodes.list", {})


class Report(Base):
    """`ffrtmp report --json`: completed jobs' quality, speed, energy and cost per group."""

    async def get(self) -> None:
        try:
            args = {"by": self.query_str("by"), "since": self.query_number("since"), "group": self.query_str("group"),
                    "points": self.query_flag("points")}
        except ApiError as exc:
            return self.fail(exc)
        await self.run("report", {k: v for k, v in args.items() if v is not None})


class Recommend(Base):
    """`ffrtmp recommend --json`: the cheapest measured encoder and bitrate for one quality target."""

    async def get(self) -> None:
        try:
            args = request_args(self.query_str("resolution") or "", self.query_int("fps") or 0,
                                self.query_number("target_vmaf"), self.query_number("target_psnr"),
                                self.query_str("codec"))
        except ApiError as exc:
            return self.fail(exc)
        except InvalidInput as exc:
            return self.fail(ApiError(400, str(exc), exc.field))
        await self.run("recommend", args)


class Stats(Base):
    async def get(self) -> None:
        await self.run("stats", {})


class Logs(Base):
    """A job's stored log, or with `?follow=1` its lines as Server-Sent Events until the job ends."""

    closed: asyncio.Queue[bytes | None] | None = None

    def log_args(self, job_id: str) -> dict[str, Any]:
        args: dict[str, Any] = {"id": job_id}
        attempt = self.query_str("attempt")
        if attempt is not None:
            args["attempt"] = attempt if attempt == "all" else self.query_int("attempt")
        if (tail := self.query_int("tail")) is not None:
            args["tail"] = tail
        return args

    async def get(self, job_id: str) -> None:
        try:
            args = self.log_args(job_id)
            follow = self.get_query_argument("follow", "0") not in ("0", "", "false")
        except ApiError as exc:
            return self.fail(exc)
        if not follow:
            return await self.run("logs", args)
        await self.follow(args)

    def on_connection_close(self) -> None:
        if self.closed is not None:
            self.closed.put_nowait(None)

    async def follow(self, args: dict[str, Any]) -> None:
        last = self.request.headers.get("Last-Event-ID", "")
        attempt, _, seq = last.partition(".")
        if attempt.isdigit() and seq.isdigit():  # an EventSource reconnecting: resume after the last line seen
            args = {**{k: v for k, v in args.items() if k != "tail"}, "after": [int(attempt), int(seq)]}
        frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = frames
        route = self.gateway.open(frames.put_nowait)
        try:
            self.gateway.send(route, self.gateway.frame("logs.follow", args, self.key()), self.request.remote_ip or "?")
            await self.stream(frames)
        except ApiError as exc:
            if not self._headers_written:
                self.fail(exc)
            else:
                await self.event("error", exc.body())
                self.finish()
        except tornado.iostream.StreamClosedError:
            pass  # the client went away: closing the route drops the follower on the master
        finally:
            self.gateway.bridge.close(route)

    async def stream(self, frames: asyncio.Queue[bytes | None]) -> None:
        status = None
        while True:
            if frames.qsize() > FOLLOW_BACKLOG:
                raise ApiError(503, "this follower fell too far behind; follow again", "follow")
            try:
                raw = await asyncio.wait_for(frames.get(), FOLLOW_SILENCE)
            except TimeoutError:
                raise ApiError(503, f"no word from the master for {FOLLOW_SILENCE:g}s; follow again") from None
            if raw is None:
                return  # the connection closed
            message = decode(raw)
            if message.kind is Kind.REPLY:
                job = answer_of(message)  # an error reply raises ApiError
                await self.start_stream()
                await self.event("end", job)
                self.finish()
                return
            await self.start_stream()
            body = message.body["body"] if isinstance(message.body["body"], dict) else {}
            if body.get("status") is not None and body["status"] != status:
                status = body["status"]
                await self.event("status", {"status": status})
            lines = body.get("lines") or []
            for line in lines:
                await self.event("line", line, f"{line['attempt']}.{line['seq']}")
            if not lines:
                self.write(": keep-alive\n\n")
            await self.flush()

    async def start_stream(self) -> None:
        if not self._headers_written:
            self.set_header("Content-Type", "text/event-stream")
            self.set_header("X-Accel-Buffering", "no")
            await self.flush()

    async def event(self, name: str, data: Any, event_id: str | None = None) -> None:
        head = f"id: {event_id}\n" if event_id else ""
        self.write(f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n")


class NotFoundHandler(Base):
    def prepare(self) -> None:
        self.fail(ApiError(404, f"no endpoint {self.request.path[:100]} (see /api/openapi.json)", "path"))
