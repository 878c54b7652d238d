"""The node registry on its own: which attempts hold slots, what placement sees, what frees a slot."""

from __future__ import annotations

import pytest

from ffrtmp.errors import Conflict
from ffrtmp.master.nodes import NodeSession
from ffrtmp.master.registry import NodeRegistry

T0 = 1_700_000_000.0


def node(name: str = "alpha", route: bytes | None = b"r-alpha", slots: int = 2, prefetch: int = 0,
         status: str = "online") -> NodeSession:
    return NodeSession(name=name, fingerprint=f"fp-{name}", route=route, slots=slots, engines=frozenset({"null"}),
                       status=status, prefetch=prefetch)


def joined(registry: NodeRegistry, session: NodeSession, old: NodeSession | None = None) -> NodeSession:
    registry.join(session, old)
    return session


def free_of(registry: NodeRegistry, name: str) -> int:
    return {view.name: view.free for view in registry.views()}[name]


def test_every_attempt_holds_a_slot_until_it_is_released() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node(slots=2))
    assert free_of(registry, "alpha") == 2
    alpha.add("j1", 1, T0)
    alpha.add("j2", 1, T0)
    assert free_of(registry, "alpha") == 0
    registry.release(alpha, "j1")
    assert free_of(registry, "alpha") == 1
    registry.release(alpha, "j1")  # releasing twice frees nothing more
    assert free_of(registry, "alpha") == 1


def test_a_stopping_attempt_keeps_its_slot_but_is_not_running() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node(slots=1))
    alpha.add("j1", 3, T0).stopping = True
    assert free_of(registry, "alpha") == 0, "the worker may still run it until it confirms the stop"
    assert alpha.running == {} and not alpha.runs("j1", 3)
    assert registry.held_by_tenant({""}) == {"": 0}, "a running quota does not count a stopping attempt"


def test_prefetch_places_fill_after_the_slots_and_count_as_queued() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node(slots=1, prefetch=2))
    assert free_of(registry, "alpha") == 3
    for job in ("j1", "j2", "j3"):
        alpha.add(job, 1, T0, tenant="acme")
    assert free_of(registry, "alpha") == 0
    capacity = registry.capacity()
    assert (capacity.nodes, capacity.slots, capacity.busy_slots, capacity.queued) == (1, 1, 1, 2)
    assert registry.held_by_tenant({"acme", "other"}) == {"acme": 3, "other": 0}


def test_a_draining_or_offline_node_offers_no_room() -> None:
    registry = NodeRegistry()
    joined(registry, node("alpha"))
    draining = joined(registry, node("beta", route=b"r-beta"))
    draining.status = "draining"
    gone = joined(registry, node("gamma", route=b"r-gamma"))
    registry.disconnect(gone)
    assert {view.name: view.free for view in registry.views()} == {"alpha": 2, "beta": 0}
    assert registry.capacity().nodes == 2


def test_disconnect_frees_every_slot_and_forgets_the_route() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node())
    alpha.add("j1", 1, T0)
    assert registry.session_of(b"r-alpha") is alpha and registry.joined(b"r-alpha")
    assert registry.disconnect(alpha) == b"r-alpha"
    assert alpha.attempts == {} and alpha.route is None and alpha.status == "offline"
    assert registry.session_of(b"r-alpha") is None and not registry.joined(b"r-alpha")
    assert registry.get("alpha") is alpha, "an offline node is still known (its row, `nodes list`)"


def test_a_rejoin_takes_over_the_attempts_and_their_slots() -> None:
    registry = NodeRegistry()
    old = joined(registry, node())
    old.add("j1", 2, T0)
    assert registry.unroute(b"r-alpha") == "alpha"
    new = joined(registry, node(route=b"r-alpha-2"), old)
    assert new.runs("j1", 2) and free_of(registry, "alpha") == 1
    assert registry.session_of(b"r-alpha") is None and registry.session_of(b"r-alpha-2") is new


def test_only_an_offline_node_without_attempts_may_be_forgotten() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node())
    with pytest.raises(Conflict, match="is online.*nodes drain"):
        registry.forgettable("alpha")
    registry.disconnect(alpha)
    alpha.add("j1", 1, T0)  # restored after a restart: its attempt waits for it
    with pytest.raises(Conflict, match="1 attempt"):
        registry.forgettable("alpha")
    registry.release(alpha, "j1")
    assert registry.forgettable("alpha") is alpha
    registry.drop("alpha")
    assert registry.get("alpha") is None and registry.forgettable("alpha") is None


def test_iterating_is_safe_while_nodes_are_dropped() -> None:
    registry = NodeRegistry()
    for name in ("a", "b", "c"):
        joined(registry, node(name, route=name.encode(), status="offline"))
    for session in registry:
        registry.drop(session.name)
    assert registry.nodes == {}


def test_release_returns_the_attempt_and_hold_gives_it_its_slot_back() -> None:
    registry = NodeRegistry()
    alpha = joined(registry, node(slots=1))
    alpha.add("j1", 4, T0)
    held = registry.release(alpha, "j1")
    assert held is not None and held.attempt == 4 and free_of(registry, "alpha") == 1
    assert registry.release(alpha, "j1") is None
    registry.hold(alpha, "j1", held)
    assert alpha.runs("j1", 4) and free_of(registry, "alpha") == 0
