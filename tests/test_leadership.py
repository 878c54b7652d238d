"""The lease (SQLite backend) and the election state machine over it: two masters, one file, a fixed clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.master.leadership import Election, LeaseTimings
from ffrtmp.master.store import SqliteStore, Store
from ffrtmp.master.store.leases import Leadership, Lease, NotLeader

T0 = 1_700_000_000.0
TIMINGS = LeaseTimings(ttl=3.0, renew_every=1.0, poll_every=0.5)


class Clock:
    """Wall (the database's) and monotonic time, moved only by the test."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store_on(path: Path, clock: Clock) -> Store:
    store = SqliteStore(path)
    store.lease_clock = lambda: clock.wall
    return store


@pytest.fixture
def stores(tmp_path: Path, clock: Clock) -> tuple[Store, Store]:
    """Two connections to one file: two masters' stores."""
    return store_on(tmp_path / "master.db", clock), store_on(tmp_path / "master.db", clock)


class Events:
    def __init__(self) -> None:
        self.elected: list[int] = []
        self.deposed: list[Lease | None] = []


def election(store: Store, name: str, events: Events, timings: LeaseTimings = TIMINGS) -> Election:
    return Election(store, name, f"tcp://{name}:8080", timings, on_elected=events.elected.append,
                    on_deposed=events.deposed.append)


def tick(clock: Clock, *elections: Election) -> None:
    for one in elections:
        one.tick(clock.wall, clock.mono)


# ---- the lease itself ---------------------------------------------------------------------------------


def test_the_sqlite_store_implements_the_leadership_protocol(stores: tuple[Store, Store]) -> None:
    assert isinstance(stores[0], Leadership)


def test_a_free_lease_is_taken_with_the_next_term_and_held_leases_are_returned_unchanged(
        stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    assert a.current_lease() is None  # never held
    assert a.claim_lease("a", "tcp://a:8080", 3.0) == Lease("a", 1, "tcp://a:8080", 3.0)
    clock.advance(1.0)
    assert b.claim_lease("b", "tcp://b:8080", 3.0) == Lease("a", 1, "tcp://a:8080", 2.0)
    assert a.claim_lease("a", "tcp://a:8080", 3.0) == Lease("a", 1, "tcp://a:8080", 2.0), "renewal is renew_lease's"
    clock.advance(2.0)  # expired exactly now
    assert b.claim_lease("b", "tcp://b:8080", 3.0) == Lease("b", 2, "tcp://b:8080", 3.0)


def test_renewal_and_release_are_scoped_to_the_exact_holder_and_term(stores: tuple[Store, Store],
                                                                    clock: Clock) -> None:
    a, b = stores
    a.claim_lease("a", "tcp://a:8080", 3.0)
    assert b.renew_lease("b", 1, 3.0) is None
    assert a.renew_lease("a", 2, 3.0) is None, "a term it does not hold"
    clock.advance(2.0)
    assert a.renew_lease("a", 1, 3.0) == Lease("a", 1, "tcp://a:8080", 3.0)
    clock.advance(3.5)
    assert a.renew_lease("a", 1, 3.0) is None, "an expired lease is not renewed"
    b.claim_lease("b", "tcp://b:8080", 3.0)
    assert not a.release_lease("a", 1), "the old term cannot release the new one"
    assert b.release_lease("b", 2)
    lease = a.current_lease()
    assert lease is not None and lease.term == 2 and not lease.live


def test_a_fenced_store_commits_only_while_it_holds_its_term(stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    a.claim_lease("a", "tcp://a:8080", 3.0)
    a.fence("a", 1)
    with a.transaction():
        a.conn.execute("INSERT INTO submit_keys VALUES ('t', 'k1', '[]', 0)")
    clock.advance(3.5)  # paused past its lease; b takes over
    b.claim_lease("b", "tcp://b:8080", 3.0)
    with pytest.raises(NotLeader) as refused, a.transaction():
        a.conn.execute("INSERT INTO submit_keys VALUES ('t', 'k2', '[]', 0)")
    assert refused.value.lease == Lease("b", 2, "tcp://b:8080", 3.0)
    assert "the leader is tcp://b:8080, term 2" in str(refused.value)
    assert [row[0] for row in b.conn.execute("SELECT key FROM submit_keys")] == ["k1"], "the late write is gone"
    a.fence("a", None)  # no fencing: a lone master as before
    with a.transaction():
        a.conn.execute("INSERT INTO submit_keys VALUES ('t', 'k3', '[]', 0)")


def test_an_expired_lease_refuses_its_holders_writes_even_with_nobody_else_around(
        stores: tuple[Store, Store], clock: Clock) -> None:
    a, _ = stores
    a.claim_lease("a", "tcp://a:8080", 3.0)
    a.fence("a", 1)
    clock.advance(3.0)
    with pytest.raises(NotLeader), a.transaction():
        pass


def test_masters_announce_themselves_on_the_database_clock(stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    a.announce_master("a", "tcp://a:8080", "leader")
    clock.advance(1.5)
    b.announce_master("b", "tcp://b:8080", "standby")
    a.announce_master("a", "tcp://a:9090", "standby")
    assert [(m.name, m.address, m.role, m.last_seen) for m in b.list_masters()] == [
        ("a", "tcp://a:9090", "standby", T0 + 1.5), ("b", "tcp://b:8080", "standby", T0 + 1.5)]
    with pytest.raises(InvalidInput, match="role"):
        a.announce_master("a", "tcp://a:8080", "boss")


# ---- the election -----------------------------------------------------------------------------------


def test_the_first_master_leads_and_the_second_stands_by(stores: tuple[Store, Store], clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    tick(clock, a, b)
    assert a.leading and not b.leading
    assert one.elected == [1] and two.elected == []
    assert b.lease == Lease("a", 1, "tcp://a:8080", 3.0)
    assert {m.name: m.role for m in stores[1].list_masters()} == {"a": "leader", "b": "standby"}


def test_the_leader_renews_every_interval_so_it_keeps_the_lease(stores: tuple[Store, Store], clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    for _ in range(40):
        tick(clock, a, b)
        clock.advance(0.25)
    assert a.leading and a.term == 1 and not b.leading
    assert one.deposed == [] and two.elected == []


def test_a_dead_leader_is_replaced_within_the_ttl_and_one_poll(stores: tuple[Store, Store], clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    tick(clock, a, b)
    killed = clock.mono
    while not b.leading:  # a is dead: it never ticks again
        clock.advance(0.05)
        tick(clock, b)
    assert clock.mono - killed <= TIMINGS.ttl + TIMINGS.poll_every
    assert b.term == 2 and two.elected == [2] and b.failovers == 1


def test_a_paused_leader_stops_trusting_its_lease_before_it_expires(stores: tuple[Store, Store],
                                                                    clock: Clock) -> None:
    """Its renewals fail (the database is gone); it must stand by before a standby could take over."""
    one = Events()
    a = election(stores[0], "a", one)
    tick(clock, a)

    def broken(name: str, term: int, ttl: float) -> Lease | None:
        raise OSError("database unreachable")

    stores[0].renew_lease = broken  # type: ignore[method-assign]
    gave_up = None
    for _ in range(100):
        clock.advance(0.1)
        tick(clock, a)
        if not a.leading:
            gave_up = clock.mono
            break
    assert gave_up is not None and gave_up - 100.0 < TIMINGS.ttl
    assert one.deposed == [None]


def test_a_leader_whose_lease_was_taken_steps_down_at_its_next_renewal(stores: tuple[Store, Store],
                                                                       clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    tick(clock, a, b)
    clock.advance(3.5)  # a was frozen (SIGSTOP) past its lease: b takes over first
    tick(clock, b)
    assert b.leading and b.term == 2
    tick(clock, a)  # a wakes up
    assert not a.leading and a.term is None
    assert one.deposed == [Lease("b", 2, "tcp://b:8080", 3.0)]
    with pytest.raises(NotLeader), stores[0].transaction():  # and its store refuses its writes
        pass


def test_a_refused_write_makes_the_leader_stand_by_at_once(stores: tuple[Store, Store], clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    tick(clock, a, b)
    clock.advance(3.5)
    tick(clock, b)
    with pytest.raises(NotLeader) as refused, stores[0].transaction():
        pass
    a.lost(refused.value, clock.mono)
    assert not a.leading and one.deposed == [refused.value.lease]


def test_a_graceful_stop_hands_over_within_one_poll(stores: tuple[Store, Store], clock: Clock) -> None:
    one, two = Events(), Events()
    a, b = election(stores[0], "a", one), election(stores[1], "b", two)
    tick(clock, a, b)
    clock.advance(0.3)
    a.stop(clock.mono)
    stopped = clock.mono
    while not b.leading:
        clock.advance(0.05)
        tick(clock, b)
    assert clock.mono - stopped <= TIMINGS.poll_every
    assert {m.name: m.role for m in stores[1].list_masters()}["a"] == "standby"


def test_a_restart_on_the_same_address_takes_the_next_term_at_once(tmp_path: Path, clock: Clock) -> None:
    """The earlier run was killed holding the lease; the new run holds its port, so that run is gone."""
    first = election(store_on(tmp_path / "master.db", clock), "a", Events())
    tick(clock, first)
    clock.advance(0.5)
    again = Events()
    second = election(store_on(tmp_path / "master.db", clock), "a", again)
    tick(clock, second)
    assert second.leading and again.elected == [2]


def test_a_master_with_another_address_under_the_same_name_waits_for_the_lease(tmp_path: Path,
                                                                               clock: Clock) -> None:
    tick(clock, election(store_on(tmp_path / "master.db", clock), "a", Events()))
    other = Election(store_on(tmp_path / "master.db", clock), "a", "tcp://elsewhere:8080", TIMINGS)
    tick(clock, other)
    assert not other.leading


def test_a_failed_rebuild_gives_the_lease_back(stores: tuple[Store, Store], clock: Clock) -> None:
    def broken(term: int) -> None:
        raise OSError("disk gone")

    a = Election(stores[0], "a", "tcp://a:8080", TIMINGS, on_elected=broken)
    with pytest.raises(OSError):
        tick(clock, a)
    assert not a.leading
    lease = stores[1].current_lease()
    assert lease is not None and not lease.live, "released: a standby may take it at once"
    clock.advance(TIMINGS.poll_every)
    tick(clock, a)  # it does not grab the lease straight back: the others get a whole ttl
    lease = stores[1].current_lease()
    assert lease is not None and lease.term == 1 and not lease.live
    b = Election(stores[1], "b", "tcp://b:8080", TIMINGS)
    tick(clock, b)
    assert b.leading and b.term == 2


@pytest.mark.parametrize(("ttl", "renew", "poll", "field"), [(3.0, 2.0, 0.5, "lease-renew"),
                                                             (0.0, 1.0, 0.5, "lease-ttl"),
                                                             (3.0, 1.0, -1.0, "standby-poll")])
def test_timings_that_cannot_keep_a_lease_are_refused(ttl: float, renew: float, poll: float, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        LeaseTimings(ttl=ttl, renew_every=renew, poll_every=poll)
    assert refused.value.field == field


def test_a_stalled_leader_that_nobody_replaced_takes_the_next_term_in_the_same_tick(
        stores: tuple[Store, Store], clock: Clock) -> None:
    one = Events()
    a = election(stores[0], "a", one)
    tick(clock, a)
    clock.advance(3.5)  # its loop was stuck past the lease; no standby around
    tick(clock, a)
    assert a.leading and a.term == 2 and one.elected == [1, 2]
    assert one.deposed == [Lease("a", 1, "tcp://a:8080", -0.5)]


def test_a_leader_whose_store_disk_is_full_keeps_leading_degraded(stores: tuple[Store, Store], clock: Clock) -> None:
    """No master can write a full store, so none can take over; its own writes stay fenced by the store."""
    import sqlite3

    a = Election(stores[0], "a", "tcp://a:8080", TIMINGS, keeps_lease_on=lambda exc: isinstance(exc, sqlite3.Error))

    def full(name: str, term: int, ttl: float) -> Lease | None:
        raise sqlite3.OperationalError("database or disk is full")

    tick(clock, a)
    renew = stores[0].renew_lease
    stores[0].renew_lease = full  # type: ignore[method-assign]
    for _ in range(50):
        clock.advance(0.1)
        tick(clock, a)
    assert a.leading and a.term == 1 and a.stalled
    stores[0].renew_lease = renew  # type: ignore[method-assign]
    tick(clock, a)  # the disk is back, the lease ran out meanwhile: the next term, at once
    assert a.leading and a.term == 2 and not a.stalled
