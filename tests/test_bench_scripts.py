"""The benchmark scripts at tiny sizes: each runs to the end against real processes and says what it measured.

They are not timed here (speed is judged in `scripts/bench/run`); this keeps them from breaking unseen when
the protocol or the store changes under them (the log benchmark once waited forever on JOBs sent batched).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, timeout: float = 180) -> list[dict[str, Any]]:
    """Run one script; its JSON lines (stdout) as dicts. Fails with its output when it fails."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def only(records: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, records)
    return found[0]


def test_throughput_script_completes_every_job() -> None:
    records = run_bench("throughput.py", "--jobs", "300", "--singles", "5", "--slots", "4")
    result = only(records, bench="throughput")
    assert result["jobs"] == 300 and result["jobs_per_s"] > 0
    assert only(records, bench="latency", measure="submit_to_running")["n"] == 5


def test_compare_script_measures_latency_throughput_and_durability() -> None:
    records = run_bench("compare_ffrtmp.py", "--jobs", "300", "--singles", "5", "--slots", "4,8",
                        "--tune-jobs", "100", "--durable-jobs", "200", "--engine-rounds", "1")
    assert {r["variant"] for r in records if r["bench"] == "tune"} == {"slots:4", "slots:8"}
    assert only(records, bench="throughput")["jobs"] == 300
    assert {r["workers"] for r in records if r["bench"] == "engines_round"} == {"default", "null"}
    assert only(records, bench="throughput_null_workers")["default_vs_null"] > 0
    durable = only(records, bench="durability")
    assert (durable["acked"], durable["lost"]) == (200, 0)


def test_logs_script_stores_every_line_it_writes() -> None:
    records = run_bench("logs.py", "--jobs", "2", "--rate", "50", "--seconds", "1", "--probes", "3")
    ingest = only(records, bench="logs", measure="ingest")
    assert ingest["lines_stored"] == ingest["lines_expected"] == 100
    assert only(records, bench="logs", measure="follow_latency")["lines"] > 0


def test_flood_script_limits_the_flood() -> None:
    records = run_bench("flood.py", "--seconds", "1")
    flood = only(records, bench="flood", measure=None)
    assert flood["limited"] > 0 and flood["ok"] > 0


def test_chaos_script_loses_nothing() -> None:
    # Partitions (network namespaces) and the full disk (a tmpfs) need root; CI runs as root, elsewhere the
    # faults a user may inject run alone.
    faults = "kill,partition,stop,clock,disk" if os.geteuid() == 0 and shutil.which("ip") else "kill,stop,clock"
    records = run_bench("chaos.py", "--jobs", "40", "--node-timeout", "3s", "--interval", "1", "--faults", faults,
                        "--min-cycles", "2", timeout=300)
    chaos = only(records, bench="chaos")
    outcome = (chaos["completed"], chaos["lost"], chaos["completed_twice"], chaos["outputs_missing"])
    assert outcome == (40, 0, 0, 0), chaos
    assert (chaos["log_gaps_unmarked"], chaos["master_exits"], chaos["fault_errors"]) == (0, 0, []), chaos
    assert chaos["encoders_together_max_s"] <= chaos["node_timeout_s"], chaos
    # The watcher saw real encodes (20 of the jobs; a poll every 0.2 s misses the quickest), so 0 s means something.
    assert chaos["encodes_watched"] >= 10, chaos
    struck = {"kill": chaos["worker_kills"] and chaos["master_kills"], "stop": chaos["worker_stops"]
              and chaos["master_stops"], "clock": chaos["clock_steps"], "partition": chaos["partitions"],
              "disk": chaos["disk_fills"]}
    assert all(struck[name] for name in faults.split(",")), struck
    # The full disk bit (submits refused as "store full") and the master recovered by itself each time.
    assert chaos["disk_full_refused_submits"] == chaos["disk_fills"], chaos
    assert None not in chaos["disk_recovered_after_s"], chaos


def test_scale_script_sees_no_false_dead_nodes() -> None:
    records = run_bench("scale.py", "--workers", "20", "--procs", "2", "--seconds", "3", "--store-jobs", "2000",
                        "--list-calls", "3")
    scale = only(records, bench="scale")
    assert (scale["workers"], scale["false_dead"], scale["errors"]) == (20, 0, [])
    assert only(records, bench="jobs_list", filter="all")["n"] == 3


def test_overhead_script_compares_real_transcodes_with_xargs() -> None:
    records = run_bench("overhead.py", "--transcodes", "2", "--rounds", "1")
    overhead = only(records, bench="overhead")
    assert overhead["transcodes"] == 2 and overhead["ffrtmp_seconds"] > 0 and overhead["xargs_seconds"] > 0
    assert overhead["round_ratio_ci95"] == 0.0  # one round: no interval


def test_pg_compare_script_measures_ffrtmp_on_postgresql_and_sqlite(postgres_url: str) -> None:
    # The peers (Procrastinate, PgQueuer) live in .venv-bench only; ffrtmp on both stores is what breaks unseen.
    # No singles: each system's latency is one more cluster start (~4 s each here), which would double the test.
    records = run_bench("compare_pg.py", "--jobs", "200", "--rounds", "1", "--singles", "0", "--warmup", "0",
                        "--systems", "ffrtmp-pg,ffrtmp-sqlite", "--pg-url", postgres_url, "--slots", "4")
    assert not [r for r in records if r["bench"] == "error"], records
    assert {r["system"] for r in records if r["bench"] == "round"} == {"ffrtmp-pg", "ffrtmp-sqlite"}
    assert only(records, bench="round", system="ffrtmp-pg")["pg_cpu_ms_per_job"] > 0
    summary = only(records, bench="summary")
    assert summary["ffrtmp_pg_vs_ffrtmp_sqlite"] > 0 and summary["best_peer"] is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="write-behind is sync_file_range(2), Linux's")
def test_write_behind_script_times_commits_beside_both_kinds_of_write() -> None:
    records = run_bench("write_behind.py", "--size", "16M", "--rounds", "1")
    assert [r["mode"] for r in records] == ["plain", "write-behind"]
    assert all(r["commit_calm"]["n"] > 0 and r["commit_during_write"]["n"] > 0 for r in records), records
