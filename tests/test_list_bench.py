"""scripts/bench/list_big.py at a tiny size on both stores: it fills, serves and times every listing."""

from __future__ import annotations

import os

import pytest

from tests.postgres import DEFAULT_SERVER
from tests.test_bench_scripts import run_bench

pytestmark = pytest.mark.slow


def test_the_list_bench_times_each_listing_on_sqlite_and_postgresql(postgres_database: str) -> None:
    server = os.environ.get("FFRTMP_TEST_POSTGRES", DEFAULT_SERVER)  # the bench makes its own database there
    records = run_bench("list_big.py", "--jobs", "3000", "--calls", "2", "--pg-url", server)
    built = {r["store"]: r for r in records if r["bench"] == "list_store_build"}
    assert set(built) == {"sqlite", "postgresql"} and all(r["jobs"] == 3000 for r in built.values())
    timed = {(r["store"], r["query"]) for r in records if r["bench"] == "jobs_list" and r["p50_ms"] > 0}
    assert timed == {(store, query) for store in ("sqlite", "postgresql")
                     for query in ("all", "completed", "failed", "second_page")}
