"""A leader cut off from PostgreSQL (while its peers still reach it) steps down once its trust runs out, and a
standby takes over: a lost link to the server is not a full disk that stops every master alike.

Found by scripts/bench/failover.py: at a PostgreSQL restart the leader logged "cannot renew its lease while
its store cannot be written ... it stays leader" (the SQLite disk-full rule), which on PostgreSQL would keep
its workers on a master that can write nothing while another holds the lease.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ffrtmp.master.leadership import Election, LeaseTimings
from ffrtmp.master.membership import keeps_lease_on
from ffrtmp.master.store import SqliteStore
from ffrtmp.master.store.api import WriteFault
from ffrtmp.master.store.postgres import open_postgres_store
from tests.conftest import eventually
from tests.test_store_postgres_outage import relay_to

TIMINGS = LeaseTimings(ttl=1.0, renew_every=0.25, poll_every=0.1)


def test_only_a_store_on_this_machine_s_disk_keeps_the_lease_through_a_write_fault(tmp_path: Path,
                                                                                    postgres_url: str) -> None:
    sqlite_store = SqliteStore(tmp_path / "master.db")
    postgres_store = open_postgres_store(postgres_url)
    try:
        disk_full = sqlite3.OperationalError("database or disk is full")
        disk_full.sqlite_errorcode = sqlite3.SQLITE_FULL
        assert keeps_lease_on(sqlite_store)(WriteFault(OSError("disk full"))) is True
        assert keeps_lease_on(sqlite_store)(disk_full) is True
        assert keeps_lease_on(postgres_store)(WriteFault(OSError("server gone"))) is False
    finally:
        sqlite_store.close()
        postgres_store.close()


def test_a_leader_cut_off_from_postgresql_steps_down_within_its_trust_and_a_standby_takes_over(
        postgres_url: str) -> None:
    open_postgres_store(postgres_url).close()  # migrated, as by a master's first start
    with relay_to(postgres_url) as (relayed, relay):
        cut_off = open_postgres_store(relayed, migrate=False)
        reaching = open_postgres_store(postgres_url, migrate=False)
        try:
            a = Election(cut_off, "a", "tcp://a:8080", TIMINGS, keeps_lease_on=keeps_lease_on(cut_off))
            b = Election(reaching, "b", "tcp://b:8080", TIMINGS, keeps_lease_on=keeps_lease_on(reaching))
            a.tick(time.time(), time.monotonic())
            b.tick(time.time(), time.monotonic())
            assert a.leading and not b.leading and a.term == 1
            relay.cut()  # a's link to the server is gone; b still reaches it
            cut = time.monotonic()
            stepped_down: list[float] = []

            def both() -> bool:
                for one in (a, b):
                    one.tick(time.time(), time.monotonic())
                if not a.leading and not stepped_down:
                    stepped_down.append(time.monotonic() - cut)
                return b.leading

            eventually(both, timeout=10, interval=0.02, message="b to take over from a, which cannot reach the server")
            took_over = time.monotonic() - cut
            assert stepped_down and stepped_down[0] <= TIMINGS.trust + TIMINGS.renew_every, stepped_down
            assert not a.leading and not a.stalled
            assert b.term == 2
            assert stepped_down[0] <= took_over, "a stood by before b could lead: never two leaders"
        finally:
            cut_off.close()
            reaching.close()
