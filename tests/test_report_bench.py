"""scripts/bench/quality_report.py at a tiny size: it fills a store through the Store API and times every
report query, counting every job it put in (its speed is judged by running it at 100,000 jobs)."""

from __future__ import annotations

import pytest

from ffrtmp.master.store.report import GROUPINGS
from tests.test_bench_scripts import run_bench

pytestmark = pytest.mark.slow


def test_the_report_benchmark_counts_every_job_in_every_query() -> None:
    records = run_bench("quality_report.py", "--jobs", "300", "--rounds", "1", timeout=120)
    fill = [r for r in records if r["bench"] == "quality_report_fill"]
    assert len(fill) == 1 and fill[0]["jobs"] == 300
    queries = {r["query"]: r for r in records if r["bench"] == "quality_report"}
    assert {f"by {by}" for by in GROUPINGS} | {"rate-quality points"} <= queries.keys()
    for name, record in queries.items():
        assert record["seconds"] > 0 and record["groups"] > 0, record
        if "since" not in name:
            assert record["counted"] == 300, record
