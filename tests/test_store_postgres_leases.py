"""Leases and fencing on PostgreSQL: two masters' stores on one real database.

Expiry is the database's clock passing `expires_at`; the tests move `expires_at` into the past instead of
waiting for it (the same state, reached without a sleep).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ffrtmp.errors import InvalidInput, StoreUnavailable
from ffrtmp.master.store.health import WriteFault
from ffrtmp.master.store.leases import Leadership, Lease, MasterRow, NotLeader
from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from tests.test_store import T0, spec

TTL = 30.0


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a = open_postgres_store(postgres_url)
    b = open_postgres_store(postgres_url)
    yield a, b
    a.close()
    b.close()


def expire(url: str) -> None:
    """The database's clock passes the lease's end."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE leader_lease SET expires_at = clock_timestamp() - interval '1 second'")


def job_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        return int(row[0])


def backend_pid(store: PostgresStore) -> int:
    row = store.one("SELECT pg_backend_pid() AS pid")
    assert row is not None
    return int(row["pid"])


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def test_the_store_is_a_leadership(pair: tuple[PostgresStore, PostgresStore]) -> None:
    assert isinstance(pair[0], Leadership)


def test_claim_fence_expire_takeover_and_the_old_leader_commits_nothing(
        pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, b = pair
    assert a.current_lease() is None
    mine = a.claim_lease("a", "tcp://a:9000", TTL)
    assert (mine.holder, mine.term, mine.address) == ("a", 1, "tcp://a:9000") and 0 < mine.expires_in <= TTL
    theirs = b.claim_lease("b", "tcp://b:9000", TTL)
    assert (theirs.holder, theirs.term, theirs.address) == ("a", 1, "tcp://a:9000"), "a held lease is not taken"
    again = a.claim_lease("a", "tcp://a:9000", TTL)
    assert again.term == 1, "claiming what one holds does not renew it or raise its term"

    a.fence("a", 1)
    a.insert_jobs([spec()], T0, 3)
    assert job_count(postgres_url) == 1

    expire(postgres_url)
    taken = b.claim_lease("b", "tcp://b:9000", TTL)
    assert (taken.holder, taken.term) == ("b", 2)
    with pytest.raises(NotLeader) as refused:
        a.insert_jobs([spec(), spec()], T0, 3)
    assert refused.value.lease is not None and (refused.value.lease.holder, refused.value.lease.term) == ("b", 2)
    assert "tcp://b:9000" in str(refused.value)
    with pytest.raises(NotLeader), a.transaction():
        raise AssertionError("the body of a fenced-out transaction never runs")
    assert job_count(postgres_url) == 1, "the stale leader committed nothing"
    assert a.renew_lease("a", 1, TTL) is None

    b.fence("b", 2)
    b.insert_jobs([spec()], T0, 3)
    assert job_count(postgres_url) == 2


def test_renew_only_by_the_exact_holder_and_term_and_release_hands_it_on(
        pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, b = pair
    a.claim_lease("a", "tcp://a:1", 5.0)
    renewed = a.renew_lease("a", 1, TTL)
    assert renewed is not None and renewed.term == 1 and renewed.expires_in > 5.0
    assert a.renew_lease("a", 2, TTL) is None, "another term of the same name"
    assert b.renew_lease("b", 1, TTL) is None, "the same term, another name"
    expire(postgres_url)
    assert a.renew_lease("a", 1, TTL) is None, "an expired lease is not revived"
    assert b.claim_lease("b", "tcp://b:1", TTL).term == 2
    assert a.release_lease("a", 1) is False
    assert b.release_lease("b", 2) is True
    released = a.current_lease()
    assert released is not None and released.expires_in <= 0 and released.holder == "b"
    assert a.claim_lease("a", "tcp://a:1", TTL).term == 3, "a released lease is free at once, with a new term"


def test_a_fenced_write_in_flight_holds_off_a_takeover_until_it_commits(
        pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, _ = pair
    a.claim_lease("a", "tcp://a:1", TTL)
    a.fence("a", 1)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SET lock_timeout = '100ms'")
        with a.transaction():
            a.insert_jobs([spec()], T0, 3)
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("UPDATE leader_lease SET holder = 'b', term = term + 1")
        other.execute("UPDATE leader_lease SET expires_at = clock_timestamp()")  # free once it committed
    assert job_count(postgres_url) == 1


def test_no_fence_is_todays_single_master(pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, b = pair
    b.claim_lease("b", "tcp://b:1", TTL)
    a.fence("a", 7)
    with pytest.raises(NotLeader):
        a.insert_jobs([spec()], T0, 3)
    a.fence("a", None)
    a.insert_jobs([spec()], T0, 3)
    assert job_count(postgres_url) == 1


def test_masters_announce_themselves_on_the_databases_clock(pair: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = pair
    a.announce_master("a", "tcp://a:1", "leader")
    b.announce_master("b", "tcp://b:1", "standby")
    a.announce_master("a", "tcp://a:2", "standby")
    masters = a.list_masters()
    assert [(m.name, m.address, m.role) for m in masters] == [("a", "tcp://a:2", "standby"),
                                                               ("b", "tcp://b:1", "standby")]
    now = a.one("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")
    assert now is not None and all(isinstance(m, MasterRow) and abs(m.last_seen - now["now"]) < 60 for m in masters)
    with pytest.raises(InvalidInput, match="role"):
        a.announce_master("a", "tcp://a:1", "king")


def test_a_killed_session_reconnects_and_a_fenced_write_is_still_checked(
        pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, b = pair
    a.claim_lease("a", "tcp://a:1", TTL)
    a.fence("a", 1)
    terminate(postgres_url, backend_pid(a))
    a.insert_jobs([spec()], T0, 3)  # a fresh connection begins it, and checks the lease first
    assert job_count(postgres_url) == 1

    terminate(postgres_url, backend_pid(a))
    expire(postgres_url)
    assert b.claim_lease("b", "tcp://b:1", TTL).term == 2
    with pytest.raises(NotLeader):
        a.insert_jobs([spec()], T0, 3)
    assert job_count(postgres_url) == 1, "never an unfenced write after the reconnect"


def test_a_session_killed_inside_a_transaction_ends_the_batch_and_nothing_is_half_stored(
        pair: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    a, _ = pair
    a.claim_lease("a", "tcp://a:1", TTL)
    a.fence("a", 1)
    with pytest.raises(WriteFault), a.transaction():
        a.insert_jobs([spec()], T0, 3)
        terminate(postgres_url, backend_pid(a))
        a.insert_jobs([spec()], T0, 3)
    assert job_count(postgres_url) == 0
    with pytest.raises(StoreUnavailable):
        killed = backend_pid(a)  # reconnects: the dead session is not reused
        terminate(postgres_url, killed)
        a.get_job("0" * 32)  # outside a transaction: one clear refusal...
    assert a.get_job("0" * 32) is None  # ...and the next call has a connection again
    lease = a.current_lease()
    assert isinstance(lease, Lease) and lease.term == 1
