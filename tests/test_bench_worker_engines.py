"""The default-vs-null worker benchmark at a tiny size: it runs to the end and reports both kinds."""

from __future__ import annotations

import pytest

from tests.test_bench_scripts import only, run_bench

pytestmark = pytest.mark.slow


def test_worker_engines_script_measures_both_kinds_of_worker() -> None:
    records = run_bench("worker_engines.py", "--jobs", "200", "--rounds", "1", "--slots", "2", timeout=300)
    for kind in ("default", "null"):
        record = only(records, workers=kind)
        assert record["jobs"] == 200 and record["jobs_per_s"] > 0 and record["worker_cpu_ms_per_job"] > 0
    assert only(records, summary=True)["default_vs_null"] > 0
