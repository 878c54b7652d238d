"""What a master that does not lead says to its peers: "not the leader; the leader is ADDRESS, term N".

Worker messages get a REFUSED and client requests a REPLY, both with status NOT_LEADER and a body naming the
leader, so workers and clients can go there. One request any master answers, leader or not: `cluster`
(who leads, in which term, and every master seen), read from the store's lease and masters tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ffrtmp.errors import FfrtmpError, NotAuthorized, ProtocolError
from ffrtmp.master.auth import Authority
from ffrtmp.master.store.leases import LEADER, STANDBY, Leadership, Lease
from ffrtmp.protocol import NOT_LEADER, Kind, Message, decode, encode, unbatch

log = logging.getLogger("ffrtmp.master")

CLUSTER_OP = "cluster"
"""The request every master answers (`ffrtmp cluster status`)."""


def not_leader_text(lease: Lease | None) -> str:
    if lease is None or not lease.live:
        return "not the leader; no master leads right now (an election is under way): retry in a moment"
    return f"not the leader; the leader is {lease.address}, term {lease.term}"


def not_leader_body(lease: Lease | None) -> dict[str, Any]:
    """What a NOT_LEADER answer carries besides its text: where to go instead."""
    live = lease is not None and lease.live
    return {"leader": lease.address if live and lease else None, "name": lease.holder if live and lease else None,
            "term": lease.term if lease is not None else 0}


def cluster_status(store: Leadership) -> dict[str, Any]:
    """`{"leader", "term", "address", "masters": [{"name", "address", "role", "last_seen"}]}`: the role is the
    lease's word (a master killed while leading keeps its row, but no longer the role)."""
    lease = store.current_lease()
    live = lease is not None and lease.live
    masters = [{"name": row.name, "address": row.address,
                "role": LEADER if live and lease and row.name == lease.holder else STANDBY,
                "last_seen": row.last_seen} for row in store.list_masters()]
    return {"leader": lease.holder if live and lease else None, "term": lease.term if lease else 0,
            "address": lease.address if live and lease else None, "masters": masters}


def is_cluster_request(frame: bytes) -> bool:
    """Cheap first: the leader sees every frame, and only a handful are `cluster` requests."""
    if b'"cluster"' not in frame:
        return False
    try:
        message = decode(frame)
    except ProtocolError:
        return False
    return message.kind is Kind.REQUEST and message.body["op"] == CLUSTER_OP


class StandbyDesk:
    """Answers frames on behalf of a master while it does not lead (and `cluster` requests always)."""

    def __init__(self, store: Leadership, authority: Callable[[], Authority], lease: Callable[[], Lease | None],
                 send: Callable[[bytes, bytes], bool]) -> None:
        self.store = store
        self.authority = authority
        """The current coordinator's (API keys are checked as the leader would)."""
        self.lease = lease
        """The lease as this master last read it."""
        self.send = send
        self.answered = 0
        """Frames answered with NOT_LEADER (a metric: peers still talking to a standby)."""

    def answer(self, frames: list[tuple[bytes, bytes]] | list[tuple[bytes, bytes, str | None]]) -> None:
        for route, frame, *_ in frames:
            try:
                message = decode(frame)
                messages = unbatch(message) if message.kind is Kind.BATCH else [message]
            except ProtocolError:
                continue  # nothing to say to a peer that cannot be understood
            refused = False
            for one in messages:
                if one.kind is Kind.REQUEST:
                    self.send(route, self._reply(one))
                elif not refused and one.kind not in (Kind.REPLY, Kind.PARTIAL):
                    refused = True  # one answer per frame: a worker's batch of results needs only one
                    self.answered += 1
                    lease = self.lease()
                    self.send(route, encode(Kind.REFUSED, {"status": NOT_LEADER, "error": not_leader_text(lease),
                                                           **not_leader_body(lease)}))

    def _reply(self, message: Message) -> bytes:
        rid = message.body["rid"][:64]
        if message.body["op"] == CLUSTER_OP:
            return self.cluster_reply(message)
        self.answered += 1
        lease = self.lease()
        return encode(Kind.REPLY, {"rid": rid, "status": NOT_LEADER, "error": not_leader_text(lease),
                                   "body": not_leader_body(lease)})

    def cluster_reply(self, message: Message) -> bytes:
        rid = message.body["rid"][:64]
        try:
            caller = self.authority().authenticate(message.body.get("key"))
            if not caller.may("read"):
                raise NotAuthorized(f"a {caller.role} key may not read the cluster's status (it needs 'read')")
            reply = {"rid": rid, "status": 200, "body": cluster_status(self.store)}
        except FfrtmpError as exc:
            reply = {"rid": rid, "status": exc.status, "error": str(exc)}
        except Exception as exc:  # the store cannot be read: say so, never crash the loop
            log.warning("could not read the cluster's status: %s", exc)
            reply = {"rid": rid, "status": 503, "error": f"the master could not read its store: {exc}"}
        return encode(Kind.REPLY, reply)
