"""Claims that wait on the lease row (a frozen leader's fenced write holds it) grant one live term, not several.

Found by scripts/bench/failover.py: a leader SIGSTOPped inside a write transaction holds the lease row FOR
SHARE; the standbys' claims queue on it. Each claim's expiry was computed when its statement began, so once
the frozen one committed, the first claim was granted a lease already run out, the next claim in the queue
took it again, and so on: terms 3, 4 and 5 within 15 ms, each master starting to lead.
"""

from __future__ import annotations

import threading
from typing import Any

from ffrtmp.master.store.leases import Lease
from ffrtmp.master.store.postgres import open_postgres_store
from tests.conftest import eventually

TTL = 0.5


def test_claims_queued_behind_a_frozen_leader_s_write_grant_one_live_term(postgres_url: str) -> None:
    import psycopg

    stores = [open_postgres_store(postgres_url) for _ in range(3)]
    frozen = psycopg.connect(postgres_url)
    try:
        assert stores[0].claim_lease("m1", "tcp://m1:1", TTL).term == 1
        # The leader's fenced write, frozen mid-transaction: the lease row held FOR SHARE.
        frozen.execute("SELECT term FROM leader_lease WHERE holder = 'm1' AND term = 1 FOR SHARE")
        won: dict[str, Lease | BaseException] = {}

        def claim(index: int) -> None:
            name = f"m{index + 2}"
            try:
                won[name] = stores[index + 1].claim_lease(name, f"tcp://{name}:1", TTL)
            except BaseException as exc:  # reported by the assertions below
                won[name] = exc

        def waiting_on_the_row() -> bool:
            rows: list[Any] = frozen.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'").fetchall()
            return bool(rows[0][0] == 2)

        def lease_would_have_run_out() -> bool:
            rows: list[Any] = frozen.execute(
                "SELECT clock_timestamp() > expires_at + make_interval(secs => %s) FROM leader_lease",
                (TTL * 2,)).fetchall()
            return bool(rows[0][0])

        threads = [threading.Thread(target=claim, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        eventually(waiting_on_the_row, timeout=10, message="both claims to queue on the lease row")
        # Longer than a lease timed from the claims' start would last.
        eventually(lease_would_have_run_out, timeout=10, message="the wait to outlast a ttl")
        frozen.commit()  # the frozen leader resumes and commits
        for thread in threads:
            thread.join(10)
        leases = list(won.values())
        assert all(isinstance(lease, Lease) for lease in leases), won
        terms = {lease.term for lease in leases if isinstance(lease, Lease)}
        assert terms == {2}, f"one new term, seen by both: {won}"
        current = stores[0].current_lease()
        assert current is not None and current.term == 2 and current.live, current
        assert all(isinstance(lease, Lease) and lease.holder == current.holder for lease in leases), won
    finally:
        frozen.close()
        for store in stores:
            store.close()
