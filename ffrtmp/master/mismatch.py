"""Peers that speak another protocol version: answered in ours (so a peer that checks versions can say what is
wrong), and logged once per peer instead of being dropped without a word."""

from __future__ import annotations

import json
import logging

from ffrtmp.errors import ProtocolMismatch
from ffrtmp.protocol import Kind, encode

log = logging.getLogger("ffrtmp.master")

REMEMBERED = 4096
"""Peers remembered as already logged; past this many the set starts again (a flood logs again, boundedly)."""


class MismatchedPeers:
    def __init__(self) -> None:
        self.logged: set[bytes | str] = set()

    def answer(self, peer: bytes | str, frame: bytes, exc: ProtocolMismatch) -> bytes:
        """The frame to send back; logs the first mismatch of each peer."""
        kind, body = _peek(frame)
        who = "client" if kind == Kind.REQUEST.value else "peer"
        name = body.get("name")
        if kind == Kind.HELLO.value and isinstance(name, str):
            who = f"worker {name[:64]!r}"
        if peer not in self.logged:
            if len(self.logged) >= REMEMBERED:
                self.logged.clear()
            self.logged.add(peer)
            log.warning("%s", exc.sentence(who, "master"))
        error = f"this master speaks protocol {exc.ours}: install the same ffrtmp version on both"
        rid = body.get("rid")
        if kind == Kind.REQUEST.value and isinstance(rid, str) and len(rid) <= 64:
            return encode(Kind.REPLY, {"rid": rid, "status": 400, "error": error})
        return encode(Kind.REFUSED, {"status": 400, "error": error})


def _peek(frame: bytes) -> tuple[str | None, dict[str, object]]:
    """The kind and body of a frame we cannot decode, as far as they can be read (for naming the peer)."""
    try:
        raw = json.loads(frame)
    except (ValueError, RecursionError):
        return None, {}
    if not isinstance(raw, dict):
        return None, {}
    body = raw.get("b")
    return (raw.get("k") if isinstance(raw.get("k"), str) else None), (body if isinstance(body, dict) else {})
