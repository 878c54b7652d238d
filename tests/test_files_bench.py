"""scripts/bench/transfer.py at a tiny size: it runs to the end and its byte counts hold (rates are not judged)."""

from __future__ import annotations

import pytest

from tests.test_bench_scripts import only, run_bench

pytestmark = pytest.mark.slow


def test_transfer_script_measures_rates_and_resends_nothing() -> None:
    result = only(run_bench("transfer.py", "--size", "8M"), bench="transfer")
    assert result["first_sent"] == 8 * 2**20 and result["reupload_sent"] == 0 and result["fetched_ok"]
    assert result["resume_resent_ok"] and 0 < result["resume_held"] < 8 * 2**20
    assert result["upload_mb_s"] > 0 and result["raw_tcp_mb_s"] > 0
