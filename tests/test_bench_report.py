"""The benchmark report's arithmetic: targets, the default-vs-null row, the overhead interval, the spread table.

Pure functions over JSON records (no processes): what `scripts/bench/run` writes into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))

import overhead  # noqa: E402
import report  # noqa: E402
import spread  # noqa: E402


def run_records(run: str, ours: float, null: float, huey: float, overhead_pct: float | None = None,
                ci: float = 0.004) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {"bench": "machine", "run": run, "command": f"scripts/bench/run --parts compare # {run}", "part": "machine"},
        {"bench": "throughput", "system": "ffrtmp", "jobs_per_s": ours, "enqueue_per_s": 20000.0,
         "worker_cpu_ms_per_job": 0.11, "run": run, "part": "compare"},
        {"bench": "throughput_null_workers", "system": "ffrtmp", "jobs_per_s": null, "default_jobs_per_s": ours,
         "default_vs_null": round(ours / null, 3), "rounds": 2, "worker_cpu_ms_per_job": 0.10,
         "default_worker_cpu_ms_per_job": 0.11, "run": run, "part": "compare"},
        {"bench": "throughput", "system": "huey", "jobs_per_s": huey, "enqueue_per_s": 4000.0, "run": run,
         "part": "compare"},
        {"bench": "throughput", "system": "rq", "jobs_per_s": huey / 10, "enqueue_per_s": 9000.0, "run": run,
         "part": "compare"},
    ]
    if overhead_pct is not None:
        ratio = 1 + overhead_pct / 100
        records.append({"bench": "overhead", "system": "ffrtmp", "transcodes": 40, "rounds": 10,
                        "ffrtmp_seconds": 7.0 * ratio, "xargs_seconds": 7.0, "ratio": ratio,
                        "overhead_percent": overhead_pct, "round_ratio_mean": ratio, "round_ratio_ci95": ci,
                        "round_ratio_min": ratio - 0.01, "round_ratio_max": ratio + 0.01, "work": "w",
                        "xargs_nice": 10, "xargs_own_sessions": True, "own_cpu_percent_of_ffmpeg": 2.5,
                        "cpu_ratio": 1.031, "command": "/usr/bin/ffmpeg -i in out", "run": run, "part": "overhead"})
    return records


def target(records: list[dict[str, Any]], name: str) -> tuple[str, bool | None]:
    found = [(measured, ok) for label, measured, ok in report.targets(records) if label.startswith(name)]
    assert len(found) == 1, report.targets(records)
    return found[0]


def test_default_workers_are_held_to_within_ten_percent_of_null_workers() -> None:
    assert target(run_records("r", 3000.0, 3200.0, 1500.0), "default workers within 10 %") == \
        ("0.94x (medians of 2 alternating rounds: 3,000 vs 3,200 jobs/s; worker CPU 0.110 vs 0.100 ms/job)",
         True)
    assert target(run_records("r", 2800.0, 3200.0, 1500.0), "default workers within 10 %")[1] is False


def test_the_alternating_rounds_sit_under_ffrtmp_with_their_ratio() -> None:
    table = report.systems_table(run_records("r", 3000.0, 3200.0, 1500.0), markdown=True)
    lines = table.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith("| ffrtmp |"))
    assert lines[ours + 1].startswith("| ffrtmp, alternating rounds: default workers | 3,000 |")
    assert lines[ours + 2].startswith("| ffrtmp, alternating rounds: `--engines null` workers | 3,200 |")
    assert lines[ours + 2].endswith("| default / null 0.94x |")


def test_overhead_target_is_one_percent_and_judged_by_the_interval() -> None:
    name = "real-work overhead <= 1 %"
    assert target(run_records("r", 1, 1, 1, overhead_pct=0.2, ci=0.005), name)[1] is True
    assert target(run_records("r", 1, 1, 1, overhead_pct=2.0, ci=0.005), name)[1] is False
    measured, ok = target(run_records("r", 1, 1, 1, overhead_pct=-1.6, ci=0.17), name)
    assert ok is None and "wall time cannot tell" in measured and "own 2.5 % of FFmpeg's" in measured
    table = report.targets_table(run_records("r", 1, 1, 1, overhead_pct=-1.6, ci=0.17), markdown=True)
    assert "wall time cannot tell | undecided |" in table
    assert "| scale" not in table and "CPU, RSS, false dead nodes | not measured | - |" in table


def test_overhead_text_says_whether_the_interval_is_narrower_than_the_gap() -> None:
    assert "narrower than the gap" in report._overhead_intro(run_records("r", 1, 1, 1, 2.0, ci=0.005))
    assert "cannot tell the overhead from 0" in report._overhead_intro(run_records("r", 1, 1, 1, 0.3, ci=0.005))
    text = report._overhead_intro(run_records("r", 1, 1, 1, 0.3))
    assert "used 2.5 % of what xargs' FFmpegs used" in text and "**1.031**" in text and "`setsid`" in text


def test_interval95_is_the_t_interval_of_the_mean() -> None:
    ratios = [1.01, 1.03, 1.00, 1.02]
    expected = 3.18 * statistics.stdev(ratios) / 2  # t(0.975, df=3) = 3.18
    assert overhead.interval95(ratios) == pytest.approx(expected)
    assert overhead.interval95([1.02]) == 0.0
    # df 11 has no entry: the smaller df's (larger) quantile keeps the interval on the safe side
    assert overhead.interval95([1.0, 1.01] * 6) == pytest.approx(2.23 * statistics.stdev([1.0, 1.01] * 6) / 12**0.5)


def test_a_later_part_keeps_the_earlier_part_and_the_command_that_made_it() -> None:
    earlier = run_records("2026-01-01T00:00:00Z", 3000.0, 3100.0, 1500.0)
    later = [{"bench": "machine", "run": "2026-01-02T00:00:00Z", "command": "scripts/bench/run --parts overhead",
              "part": "machine"}, *run_records("2026-01-02T00:00:00Z", 1, 1, 1, overhead_pct=0.5)[5:]]
    merged = report.merge(earlier, later, {"overhead"})
    assert report._command_of(merged, "compare") == "Reproduce: `scripts/bench/run --parts compare # " \
        "2026-01-01T00:00:00Z`."
    assert report._command_of(merged, "overhead") == "Reproduce: `scripts/bench/run --parts overhead`."
    assert report.find(merged, "machine")["run"] == "2026-01-02T00:00:00Z"  # the header names the latest run


def test_spread_has_a_row_per_run_and_min_median_max(tmp_path: Path) -> None:
    paths = []
    for n, (ours, null, huey) in enumerate([(3000.0, 3000.0, 1500.0), (3300.0, 3000.0, 1500.0),
                                            (2700.0, 3000.0, 1000.0)]):
        path = tmp_path / f"results-{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in run_records(f"run-{n}", ours, null, huey)))
        paths.append(path)
    runs = [(f"run-{n}", spread.figures(spread.load(p))) for n, p in enumerate(paths)]
    assert [row["default / best peer"] for _, row in runs] == [2.0, 2.2, 2.7]
    assert [row["default / null"] for _, row in runs] == [1.0, 1.1, 0.9]
    assert [row["worker CPU ms/job default / null"] for _, row in runs] == [1.1, 1.1, 1.1]
    assert runs[0][1]["best peer"] == "huey"
    lines = spread.table(runs, markdown=True).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:]}
    column = header.index("default / best peer")
    assert (rows["min"][column], rows["median"][column], rows["max"][column]) == ("2.0", "2.2", "2.7")
    assert "overhead %" not in header  # no overhead part in these runs: no empty column
