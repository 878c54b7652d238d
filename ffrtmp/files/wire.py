"""The data channel's messages (docs/files.md, "The data channel"): a JSON header, then the bytes if any.

The header is the main channel's envelope, `{"v": 1, "k": KIND, "b": BODY}`, with the kinds of the file
transfer; `decode` turns anything malformed into one `ProtocolError` naming the field, so the master's file
thread and the peers only ever see well-typed bodies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ffrtmp.defaults import PROTOCOL_VERSION
from ffrtmp.errors import ProtocolError
from ffrtmp.protocol import without_nul

CHUNK_SIZE = 256 * 1024
"""Bytes per chunk: large enough that CURVE's per-message cost vanishes, small enough for a fine resume."""
WINDOW = 16
"""Chunks in flight per transfer (credit): 4 MiB at most held by either end."""
MAX_TID = 64
MAX_HEADER = 16 * 1024

PUT, PUT_OK, CHUNK, CREDIT, STORED = "put", "put_ok", "chunk", "credit", "stored"
GET, META, DATA, ERROR = "get", "meta", "data", "error"

_S, _I, _D = (str,), (int,), (dict,)
SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    PUT: {"tid": (_S, True), "sha256": (_S, True), "size": (_I, True), "name": (_S, False), "key": (_S, False),
          "job": (_S, False), "attempt": (_I, False)},
    PUT_OK: {"tid": (_S, True), "have": ((bool,), True), "offset": (_I, False), "credit": (_I, False),
             "chunk_size": (_I, False)},
    CHUNK: {"tid": (_S, True), "offset": (_I, True)},
    CREDIT: {"tid": (_S, True), "credit": (_I, True), "offset": (_I, False)},
    STORED: {"tid": (_S, True), "sha256": (_S, True), "size": (_I, True)},
    GET: {"tid": (_S, True), "sha256": (_S, False), "job": (_S, False), "which": (_S, False),
          "offset": (_I, False), "key": (_S, False), "attempt": (_I, False), "credit": (_I, False)},
    META: {"tid": (_S, True), "sha256": (_S, True), "size": (_I, True), "name": ((str, type(None)), False)},
    DATA: {"tid": (_S, True), "offset": (_I, True)},
    ERROR: {"tid": (_S, True), "status": (_I, True), "error": (_S, True)},
}
WITH_PAYLOAD = frozenset({CHUNK, DATA})


@dataclass(frozen=True, slots=True)
class Header:
    kind: str
    body: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def encode(kind: str, body: dict[str, Any]) -> bytes:
    return _ENCODER.encode({"v": PROTOCOL_VERSION, "k": kind, "b": body}).encode()


def decode(frame: bytes) -> Header:
    """Parse and check one header frame; `ProtocolError` for anything else."""
    if len(frame) > MAX_HEADER:
        raise ProtocolError(f"a header of {len(frame)} bytes (at most {MAX_HEADER})")
    try:
        text = frame.decode("utf-8")
        raw = _DECODER.decode(text)
        if "\\u0000" in text:  # as in a main-channel message: PostgreSQL's text cannot hold a NUL
            raw = without_nul(raw)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON header: {exc}") from None
    if not isinstance(raw, dict) or raw.get("v") != PROTOCOL_VERSION or type(raw.get("v")) is not int:
        raise ProtocolError(f"a header must be {{\"v\": {PROTOCOL_VERSION}, \"k\": ..., \"b\": {{...}}}}")
    kind, body = raw.get("k"), raw.get("b", {})
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise ProtocolError(f"unknown message kind {str(kind)[:40]!r}")
    if not isinstance(body, dict):
        raise ProtocolError(f"{kind}: the body must be an object")
    for field, (types, required) in SCHEMAS[kind].items():
        if field not in body:
            if required:
                raise ProtocolError(f"{kind}: missing field {field!r}")
            continue
        value = body[field]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ProtocolError(f"{kind}: field {field!r} has the wrong type")
        if isinstance(value, str) and len(value) > 4096:
            raise ProtocolError(f"{kind}: field {field!r} is too long")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 2**53:
            raise ProtocolError(f"{kind}: field {field!r} is out of range")
    tid = body["tid"]
    if not 1 <= len(tid) <= MAX_TID:
        raise ProtocolError(f"{kind}: field 'tid' must have 1 to {MAX_TID} characters")
    return Header(kind, body)
