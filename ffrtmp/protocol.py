"""The wire protocol: one versioned JSON envelope, one message kind per verb.

A frame is `{"v": VERSION, "k": KIND, "b": {...}}`. `decode` checks the envelope and the fields each kind
requires and turns anything malformed into one `ProtocolError`, so handlers only ever see well-typed bodies.

Worker → master: HELLO, HEARTBEAT, STARTED, LOG, RESULT, BYE.
Master → worker: WELCOME, REFUSED, JOB, CANCEL, ACK, HEARTBEAT, RESYNC, DRAIN.
Client ↔ master: REQUEST → zero or more PARTIAL, then one REPLY (the MDP/0.2 shape).
Either way: BATCH, several messages of the kinds above in one frame (short jobs come by the thousand, and
one frame for many costs far less than one each).
"""

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast

from ffrtmp.defaults import PROTOCOL_VERSION
from ffrtmp.errors import ProtocolError, ProtocolMismatch


class Kind(StrEnum):
    HELLO = "hello"
    WELCOME = "welcome"
    REFUSED = "refused"
    HEARTBEAT = "heartbeat"
    RESYNC = "resync"
    JOB = "job"
    STARTED = "started"
    LOG = "log"
    RESULT = "result"
    ACK = "ack"
    CANCEL = "cancel"
    DRAIN = "drain"
    BYE = "bye"
    REQUEST = "request"
    PARTIAL = "partial"
    REPLY = "reply"
    BATCH = "batch"


_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_LIST = (list,)
_DICT = (dict,)

# For each kind: field -> (accepted types, required). Extra fields are allowed (forward compatible).
SCHEMAS: dict[Kind, dict[str, tuple[tuple[type, ...], bool]]] = {
    Kind.HELLO: {
        "name": (_STR, True),
        "fingerprint": (_STR, True),
        "version": (_STR, True),
        "slots": (_INT, True),
        "engines": (_LIST, True),
        "encoders": (_DICT, False),
        "resources": (_DICT, False),
        "labels": (_DICT, False),
        "running": (_LIST, False),
        "key": (_STR, False),
        "prefetch": (_INT, False),
        "sees": (_LIST, False),
        "quality": (_LIST, False),
    },
    Kind.WELCOME: {"node": (_STR, True), "heartbeat_interval": (_NUM, True), "node_timeout": (_NUM, True)},
    Kind.REFUSED: {"status": (_INT, True), "error": (_STR, True)},
    Kind.HEARTBEAT: {"jobs": (_LIST, False), "resources": (_DICT, False), "pending": (_INT, False),
                     "logs": (_LIST, False)},
    Kind.RESYNC: {},
    Kind.JOB: {"job": (_STR, True), "attempt": (_INT, True), "spec": (_DICT, True), "trace": (_DICT, False)},
    Kind.STARTED: {"job": (_STR, True), "attempt": (_INT, True), "at": (_NUM, True)},
    Kind.LOG: {"job": (_STR, True), "attempt": (_INT, True), "lines": (_LIST, True)},
    Kind.RESULT: {
        "job": (_STR, True),
        "attempt": (_INT, True),
        "status": (_STR, True),
        "error": ((str, type(None)), False),
        "failure": ((str, type(None)), False),
        "metrics": (_DICT, False),
        "output": ((str, type(None)), False),
        "at": (_NUM, True),
        "started_at": (_NUM, False),
    },
    Kind.ACK: {"job": (_STR, True), "attempt": (_INT, True)},
    Kind.CANCEL: {"job": (_STR, True), "attempt": (_INT, True)},
    Kind.DRAIN: {},
    Kind.BYE: {},
    Kind.REQUEST: {"rid": (_STR, True), "op": (_STR, True), "args": (_DICT, False), "key": (_STR, False)},
    Kind.PARTIAL: {"rid": (_STR, True), "body": ((dict, list), True)},
    Kind.REPLY: {"rid": (_STR, True), "status": (_INT, True), "body": ((dict, list, type(None)), False),
                 "error": (_STR, False)},
    Kind.BATCH: {"items": (_LIST, True)},
}

NOT_LEADER = 421
"""The status of a REFUSED or REPLY from a standby master (one that does not hold the lease): its body also
carries `leader` (the leader's address, or null while none holds the lease), `name` and `term`."""

MAX_BATCH_ITEMS = 1000
"""Messages one BATCH may carry (jobs for a worker, results and acknowledgements, …)."""

MAX_STRING = 64 * 1024
"""No single string field of a message may be longer (log lines are cut well below this)."""

MAX_SEES = 64
"""Paths one HELLO's `sees` may hold (a worker's input roots and --path-map FROMs)."""
MAX_SEES_PATH = 4096
"""The longest of them (as long as a job's input may be)."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    body: dict[str, Any]


# ---- the bodies the master reads, as `decode` has checked them (SCHEMAS above; extras are unchecked) ----
# (No `from __future__ import annotations` in this module: TypedDict reads NotRequired only from real
# annotations on Python 3.11.)


class RunningItem(TypedDict):
    job: str
    attempt: int


class HelloBody(TypedDict):
    name: str
    fingerprint: str
    version: str
    slots: int
    engines: list[Any]
    encoders: NotRequired[dict[str, Any]]
    resources: NotRequired[dict[str, Any]]
    labels: NotRequired[dict[str, Any]]
    running: NotRequired[list[Any]]
    """Items like `RunningItem`, each still to be checked (they come from the network)."""
    key: NotRequired[str]
    prefetch: NotRequired[int]
    quality: NotRequired[list[Any]]
    """The quality metrics the worker's FFmpeg can measure ("psnr", "ssim", "vmaf"); others are ignored."""
    draining: NotRequired[object]
    recall: NotRequired[object]
    """True: the worker hands back a prefetched attempt it has not started when a CANCEL says `recall`."""
    sees: NotRequired[list[Any]]
    """The absolute paths under which the worker can read shared-storage inputs (each still to be checked)."""


class HeartbeatBody(TypedDict):
    jobs: NotRequired[list[Any]]
    """Items of job, attempt and progress figures, each still to be checked."""
    resources: NotRequired[dict[str, Any]]
    pending: NotRequired[int]
    logs: NotRequired[list[Any]]
    draining: NotRequired[object]


class StartedBody(TypedDict):
    job: str
    attempt: int
    at: float


class LogBody(TypedDict):
    job: str
    attempt: int
    lines: list[Any]
    """[seq, at, stream, text] items, each still to be checked."""


class ResultBody(TypedDict):
    job: str
    attempt: int
    status: str
    at: float
    error: NotRequired[str | None]
    failure: NotRequired[str | None]
    metrics: NotRequired[dict[str, Any]]
    output: NotRequired[str | None]
    started_at: NotRequired[float]
    partial: NotRequired[object]
    published: NotRequired[object]
    refused: NotRequired[object]
    recalled: NotRequired[object]
    """With `refused`: the master recalled this prefetched attempt for another node (no retry, no delay)."""


class RequestBody(TypedDict):
    rid: str
    op: str
    args: NotRequired[dict[str, Any]]
    key: NotRequired[str]


BODIES: dict[Kind, type] = {Kind.HELLO: HelloBody, Kind.HEARTBEAT: HeartbeatBody, Kind.STARTED: StartedBody,
                            Kind.LOG: LogBody, Kind.RESULT: ResultBody, Kind.REQUEST: RequestBody}
"""The typed body of each kind the master reads; its keys are the kind's SCHEMAS fields (a test holds them
together), plus unchecked extras the handlers judge themselves."""


def hello_body(message: Message) -> HelloBody:
    return cast(HelloBody, message.body)


def heartbeat_body(message: Message) -> HeartbeatBody:
    return cast(HeartbeatBody, message.body)


def started_body(message: Message) -> StartedBody:
    return cast(StartedBody, message.body)


def log_body(message: Message) -> LogBody:
    return cast(LogBody, message.body)


def result_body(message: Message) -> ResultBody:
    return cast(ResultBody, message.body)


def request_body(message: Message) -> RequestBody:
    return cast(RequestBody, message.body)



def encode(kind: Kind, body: dict[str, Any] | None = None) -> bytes:
    """One frame for `kind`; bodies are plain JSON values."""
    return _ENCODER.encode({"v": PROTOCOL_VERSION, "k": kind.value, "b": body or {}}).encode()


NUL_STANDIN = "\ufffd"
"""What a NUL (U+0000) in any string of a message becomes: PostgreSQL's text cannot hold one, so a worker's
error or log line with a NUL was refused by that store (the result never recorded, resent for ever), while
SQLite took it. Both stores now get the same, storable, string."""


def without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (keys too) replaced; only walked when the frame has one."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_STANDIN)
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def decode(frame: bytes | str) -> Message:
    """Parse and check one frame, raising `ProtocolError` for anything that is not a valid message."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame  # strict: no invalid UTF-8
        raw = _DECODER.decode(text)
        if "\\u0000" in text:
            raw = without_nul(raw)
        if "\\ud" in text.lower():
            # A \udXXX escape may encode a lone surrogate, which no UTF-8 consumer (SQLite, a terminal) accepts.
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("a message must be a JSON object")
    version = raw.get("v")
    if type(version) is int and version != PROTOCOL_VERSION:
        raise ProtocolMismatch(version, PROTOCOL_VERSION)
    if type(version) is not int:
        raise ProtocolError(f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})")
    try:
        kind = Kind(str(raw.get("k")))
    except ValueError:
        raise ProtocolError(f"unknown message kind {raw.get('k')!r}") from None
    body = raw.get("b", {})
    if not isinstance(body, dict):
        raise ProtocolError(f"{kind.value}: the body must be an object")
    _check_fields(kind, body)
    return Message(kind, body)


def encode_batch(items: list[tuple[Kind, dict[str, Any]]]) -> bytes:
    """One frame for several messages; a single message is sent as itself."""
    if len(items) == 1:
        return encode(*items[0])
    return encode(Kind.BATCH, {"items": [{"k": kind.value, "b": body} for kind, body in items]})


def unbatch(message: Message) -> list[Message]:
    """The messages inside a BATCH, each checked like a frame of its own; a BATCH never holds a BATCH."""
    items = message.body["items"]
    if len(items) > MAX_BATCH_ITEMS:
        raise ProtocolError(f"batch: more than {MAX_BATCH_ITEMS} items")
    messages = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("b"), dict):
            raise ProtocolError("batch: each item must be an object with a body")
        try:
            kind = Kind(str(item.get("k")))
        except ValueError:
            raise ProtocolError(f"batch: unknown message kind {item.get('k')!r}") from None
        if kind is Kind.BATCH:
            raise ProtocolError("batch: a batch cannot hold a batch")
        try:
            _check_fields(kind, item["b"])
        except ProtocolError as exc:
            raise ProtocolError(f"batch: {exc}") from None
        messages.append(Message(kind, item["b"]))
    return messages


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
"""Made once: `json.dumps`/`json.loads` with options build a new coder per call, which shows per frame."""


def _check_fields(kind: Kind, body: dict[str, Any]) -> None:
    for field, (types, required) in SCHEMAS[kind].items():
        if field not in body:
            if required:
                raise ProtocolError(f"{kind.value}: missing field {field!r}")
            continue
        value = body[field]
        # bool is an int subclass; nobody means True when they send an attempt number.
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProtocolError(f"{kind.value}: field {field!r} has the wrong type")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ProtocolError(f"{kind.value}: field {field!r} is too long")
        if isinstance(value, int) and not -(2**53) <= value <= 2**53:
            raise ProtocolError(f"{kind.value}: field {field!r} is out of range")
