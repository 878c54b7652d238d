"""scripts/bench/http_api.py at a tiny size: it runs to the end against a real master and says what it measured
(speed is judged by running it in full, not here)."""

from __future__ import annotations

import pytest

from tests.test_bench_scripts import only, run_bench

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("client", ["curl", "python"])
def test_http_api_script_measures_submits_beside_zeromq_and_idle_connections(client: str) -> None:
    records = run_bench("http_api.py", "--seconds", "1", "--clients", "2", "--idle", "50", "--client", client)
    submits = only(records, measure="submits")
    assert submits["errors"] == 0 and submits["submits"] > 0 and submits["p99_ms"] > 0
    assert submits["loop_cpu_ms_per_submit"] > 0 and submits["other_threads_cpu_ms_per_submit"] > 0
    assert only(records, measure="zmq_request_beside")["loaded_n"] > 0
    idle = only(records, measure="idle_connections")
    assert (idle["held"], idle["failed"], idle["health_while_held"]) == (50, 0, 200)
