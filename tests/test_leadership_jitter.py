"""Standbys spread their looks at the lease (leadership.JITTER), so three of them do not claim it together."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffrtmp.master.leadership import EXPIRY_SLACK, JITTER, Election
from ffrtmp.master.store import Store
from tests.test_leadership import TIMINGS, Clock, Events, election, store_on, tick


class Draws:
    """A fixed sequence of the election's random draws, repeated."""

    def __init__(self, *values: float) -> None:
        self.values = values
        self.taken = 0

    def __call__(self) -> float:
        value = self.values[self.taken % len(self.values)]
        self.taken += 1
        return value


def with_draws(store: Store, name: str, draws: Draws) -> Election:
    one = election(store, name, Events())
    one.jitter = draws
    return one


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_standbys_watching_one_expiry_look_at_spread_times_within_a_share_of_a_poll(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "master.db"
    leader = election(store_on(path, clock), "a", Events())
    tick(clock, leader)
    assert leader.leading
    standbys = [with_draws(store_on(path, clock), name, Draws(draw))
                for name, draw in (("b", 0.9), ("c", 0.0), ("d", 0.5))]
    clock.advance(TIMINGS.ttl - 0.2)  # the lease has 0.2 s left; the leader is dead from now on
    tick(clock, *standbys)
    expiry = clock.mono + 0.2 + EXPIRY_SLACK
    spread = JITTER * TIMINGS.poll_every
    assert [round(s.due - expiry, 6) for s in standbys] == [round(0.9 * spread, 6), 0.0, round(0.5 * spread, 6)]

    claims: list[str] = []
    while not any(s.leading for s in standbys):
        clock.advance(0.01)
        for standby in standbys:
            if clock.mono >= standby.due:
                claims.append(standby.name)
            standby.tick(clock.wall, clock.mono)
    assert claims == ["c"], "the earliest draw looked first, alone, and won"
    winner = next(s for s in standbys if s.leading)
    assert winner.name == "c" and winner.term == 2
    while len(claims) < 3:  # the later ones look after it won, and find a live lease
        clock.advance(0.01)
        for standby in standbys:
            if not standby.leading and clock.mono >= standby.due and standby.name not in claims:
                claims.append(standby.name)
            standby.tick(clock.wall, clock.mono)
    assert claims == ["c", "d", "b"]
    assert [s.leading for s in standbys] == [False, True, False]
    assert all(s.lease is not None and (s.lease.holder, s.lease.term) == ("c", 2) for s in standbys)


def test_a_standby_s_regular_polls_are_spread_too_and_a_draw_is_clamped(tmp_path: Path, clock: Clock) -> None:
    """No lease to watch (the store cannot be read): the next look is a poll plus a share of one; a draw out of
    [0, 1] (a bad source) never makes it earlier than a poll or later than the spread allows."""
    draws = Draws(0.25, -3.0, 7.0)
    standby = with_draws(store_on(tmp_path / "master.db", clock), "b", draws)

    def unreadable() -> None:
        raise OSError("the database is gone")

    standby.store.current_lease = unreadable  # type: ignore[method-assign]
    seen = []
    for _ in range(3):
        before = clock.mono
        standby.tick(clock.wall, clock.mono)
        seen.append(round(standby.due - before, 6))
        clock.advance(standby.due - clock.mono)
    spread = JITTER * TIMINGS.poll_every
    assert seen == [round(TIMINGS.poll_every + 0.25 * spread, 6), TIMINGS.poll_every,
                    round(TIMINGS.poll_every + spread, 6)]
    assert standby.unreadable and not standby.leading


def test_a_refused_write_is_counted(tmp_path: Path, clock: Clock) -> None:
    from ffrtmp.master.store.leases import NotLeader

    path = tmp_path / "master.db"
    a = election(store_on(path, clock), "a", Events())
    tick(clock, a)
    assert a.leading and a.refused_writes == 0
    a.lost(NotLeader(None), clock.mono)
    assert a.refused_writes == 1 and not a.leading
