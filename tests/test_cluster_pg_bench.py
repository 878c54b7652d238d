"""The failover bench's own parts: its private PostgreSQL (made, restarted, removed: never the shared one) and
how it judges throughput recovery."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

from failover import recovery  # noqa: E402
from private_pg import find_bin_dir, private_postgres  # noqa: E402


def test_recovery_is_the_first_window_after_the_fault_back_at_95_percent_of_the_one_before() -> None:
    steady = [i * 0.1 for i in range(100)]  # 10 jobs/s for 10 s
    assert recovery(steady, 5.0, 2.0) == 0.0, "no dip: recovered at once"
    gap = [t for t in steady if not 5.0 <= t < 7.5]  # nothing completes for 2.5 s after the fault
    assert recovery(gap, 5.0, 2.0) == pytest.approx(2.5, abs=0.11)
    assert recovery([t for t in steady if t < 5.0], 5.0, 2.0) is None, "never back within the horizon"
    assert recovery([], 5.0, 2.0) is None, "nothing before: nothing to compare with"


@pytest.mark.slow
def test_the_private_server_restarts_on_its_own_port_and_is_removed_at_the_end() -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        find_bin_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with private_postgres() as pg:
        assert pg.port != 5432
        url = pg.create_database("bench")
        conn = psycopg.connect(url, autocommit=True)
        before = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        pg.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")  # the restart cut every connection
        with psycopg.connect(url) as again:
            assert again.execute("SELECT pg_postmaster_start_time()").fetchone() != before
        root = pg.root
    assert not root.exists(), "its directory is removed"
