"""A client's REQUEST: who asks (API key), whether their role allows the operation, whether their rate does,
then the operation's answer from the registry (operations.py) as one REPLY, or its stream."""

from __future__ import annotations

from typing import Any

from ffrtmp.errors import FfrtmpError, InvalidInput, NotAuthorized, RateLimited
from ffrtmp.master.operations import OPERATIONS, needs_of, rate_of
from ffrtmp.master.state import MasterState
from ffrtmp.protocol import Kind, Message, request_body


def on_request(state: MasterState, route: bytes, message: Message, now: float) -> None:
    body = request_body(message)
    rid, name, args = body["rid"][:64], body["op"], body.get("args", {})
    reply: dict[str, Any]
    try:
        try:
            caller = state.authority.authenticate(body.get("key"))
        except NotAuthorized:
            state.inbound.auth_failed(state.peer(route), state.clock.mono)  # guessing costs its budget
            raise
        state.authority.authorize(caller, name, needs_of(name))
        kind = rate_of(name) if args.get("lines", True) is not False else "read"  # a wait reads
        wait = state.limited(caller.key if caller.key != "-" else state.peer(route), kind, caller.tenant)
        if wait is not None:
            raise RateLimited(f"rate limited: too many {kind} requests; retry after {max(wait, 0.01):.2f}s")
        op = OPERATIONS.get(name)
        if op is not None and op.stream is not None:
            op.stream(state, caller, route, rid, args, now)
            return  # the stream sends its own PARTIALs and final REPLY
        if op is None or op.answer is None:
            raise InvalidInput("op", f"unknown operation {name[:40]!r}")
        reply = {"rid": rid, "status": 200, "body": op.answer(state, caller, args, now)}
    except FfrtmpError as exc:
        reply = {"rid": rid, "status": exc.status, "error": str(exc)}
    state.outbox.send(route, Kind.REPLY, reply)
