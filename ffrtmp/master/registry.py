"""The workers the master knows, by name and by connection, and the slot invariant placement reads.

The invariant: every entry in a node's `attempts` holds one of its slots (or a prefetch place), `stopping`
ones included, until the attempt is removed. Placement sees a node's free room through `views`; what frees a
slot is `release` (or an attempt's removal by the job lifecycle), never a status change alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ffrtmp.errors import Conflict
from ffrtmp.master.nodes import AttemptState, NodeSession
from ffrtmp.master.scheduler import NodeView


@dataclass(frozen=True)
class Capacity:
    """Totals over the nodes that are not offline (`stats`)."""

    nodes: int
    slots: int
    busy_slots: int
    queued: int


@dataclass
class NodeRegistry:
    nodes: dict[str, NodeSession] = field(default_factory=dict)
    by_route: dict[bytes, str] = field(default_factory=dict)
    """Connection → node name, for the joined workers only."""

    def clear(self) -> None:
        """Forget every node (a master that stands by holds none)."""
        self.nodes.clear()
        self.by_route.clear()

    def get(self, name: str) -> NodeSession | None:
        return self.nodes.get(name)

    def session_of(self, route: bytes) -> NodeSession | None:
        name = self.by_route.get(route)
        return self.nodes.get(name) if name is not None else None

    def joined(self, route: bytes) -> bool:
        return route in self.by_route

    def __iter__(self) -> Iterator[NodeSession]:
        return iter(list(self.nodes.values()))

    def join(self, session: NodeSession, old: NodeSession | None) -> None:
        """`session` is connected at its route now; it takes over `old`'s attempts (and their slots)."""
        if old is not None:
            session.attempts = old.attempts
        self.nodes[session.name] = session
        if session.route is not None:
            self.by_route[session.route] = session.name

    def unroute(self, route: bytes) -> str | None:
        """Forget which node `route` belongs to (its connection is gone or replaced); the node's name."""
        return self.by_route.pop(route, None)

    def disconnect(self, session: NodeSession) -> bytes | None:
        """The node is offline: no route, no slot held. Returns the route it had."""
        route = session.route
        session.attempts.clear()
        if route is not None:
            self.by_route.pop(route, None)
        session.route = None
        session.status = "offline"
        return route

    def adopt(self, session: NodeSession) -> None:
        """A node known from the store only (after a restart, or a rollback): offline until it says HELLO."""
        self.nodes[session.name] = session

    def forgettable(self, name: str) -> NodeSession | None:
        """The node as known in memory, when it may be forgotten; Conflict while it is not offline or still
        holds attempts (their slots would be lost with it)."""
        session = self.nodes.get(name)
        if session is not None and (session.status != "offline" or session.attempts):
            raise Conflict(f"node {name!r} is {session.status}" + (f" with {len(session.attempts)} attempt(s) "
                           "still its own" if session.attempts else "") + "; only an offline node can be forgotten"
                           + ("" if session.status == "offline" else " (`nodes drain` it first)"))
        return session

    def drop(self, name: str) -> None:
        self.nodes.pop(name, None)

    def release(self, session: NodeSession, job_id: str) -> AttemptState | None:
        """The attempt of `job_id` on `session` is over: its slot is free for placement. Returns what it was."""
        return session.attempts.pop(job_id, None)

    def hold(self, session: NodeSession, job_id: str, held: AttemptState) -> None:
        """The attempt holds its slot (again): one being stopped, or an ending that could not be recorded."""
        session.attempts[job_id] = held

    def views(self) -> list[NodeView]:
        """What placement sees of every node that is not offline (free room counts every held attempt)."""
        return [session.view() for session in self.nodes.values() if session.status != "offline"]

    def held_by_tenant(self, tenants: set[str] | dict[str, int]) -> dict[str, int]:
        """Slots held by live (not stopping) attempts of each of `tenants`: what running quotas count."""
        held = dict.fromkeys(tenants, 0)
        for session in self.nodes.values():
            for state in session.attempts.values():
                if state.tenant in held and not state.stopping:
                    held[state.tenant] += 1
        return held

    def capacity(self) -> Capacity:
        live = [s for s in self.nodes.values() if s.status != "offline"]
        return Capacity(nodes=len(live), slots=sum(s.slots for s in live), busy_slots=sum(s.busy for s in live),
                        queued=sum(s.queued for s in live))
