#!/usr/bin/env python3
"""The spread over several suite runs: one row per run of the compare and overhead figures, then min/median/max.

The machine the benchmarks run on may be shared, so one run's absolute numbers move a lot; the ratios measured
inside one run (ffrtmp against the best peer, default workers against `--engines null` ones, ffrtmp against
xargs) are what is compared, and this table shows how far they move from run to run.

    python scripts/bench/spread.py build/bench/results-*.jsonl [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from report import PEERS, Record, find

COLUMNS = ("ffrtmp", "default rounds", "null rounds", *PEERS, "best peer", "default / best peer", "default / null",
           "worker CPU ms/job default / null", "overhead %", "overhead ±95 %",
           "ffrtmp own CPU % of FFmpeg", "CPU ratio")


def load(path: Path) -> list[Record]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def figures(records: list[Record]) -> dict[str, Any]:
    """The row of one run: jobs/s of each system and the in-run ratios (None where a part did not run)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    ours = find(records, "throughput", system="ffrtmp")
    null = find(records, "throughput_null_workers", system="ffrtmp")
    if null is not None and "default_vs_null" not in null:
        null = None  # a single null run from before the alternating rounds: not comparable
    row["ffrtmp"] = ours["jobs_per_s"] if ours else None  # default workers, the figure set against the peers
    row["default rounds"] = null["default_jobs_per_s"] if null else None
    row["null rounds"] = null["jobs_per_s"] if null else None
    peers = {p: r["jobs_per_s"] for p in PEERS if (r := find(records, "throughput", system=p))}
    row.update(peers)
    if peers:
        best = max(peers, key=lambda p: peers[p])
        row["best peer"] = best
        if ours:
            row["default / best peer"] = round(ours["jobs_per_s"] / peers[best], 2)
    if null:
        row["default / null"] = null["default_vs_null"]
        row["worker CPU ms/job default / null"] = round(null["default_worker_cpu_ms_per_job"]
                                                        / null["worker_cpu_ms_per_job"], 3)
    overhead = find(records, "overhead", system="ffrtmp")
    if overhead:
        row["overhead %"] = overhead["overhead_percent"]
        row["overhead ±95 %"] = round(100 * overhead.get("round_ratio_ci95", 0.0), 2)
        row["ffrtmp own CPU % of FFmpeg"] = overhead.get("own_cpu_percent_of_ffmpeg")
        row["CPU ratio"] = overhead.get("cpu_ratio")
    return row


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return str(value)


def table(runs: list[tuple[str, dict[str, Any]]], markdown: bool) -> str:
    used = [c for c in COLUMNS if any(row[c] is not None for _, row in runs)]
    rows = [[name, *(cell(row[c]) for c in used)] for name, row in runs]
    for label, pick in (("min", min), ("median", statistics.median), ("max", max)):
        summary = []
        for column in used:
            values = [row[column] for _, row in runs if isinstance(row[column], int | float)]
            summary.append(cell(round(pick(values), 3)) if values else "-")
        rows.append([label, *summary])
    header = ["run", *used]
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
                          *("| " + " | ".join(r) + " |" for r in rows)])
    widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in [header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="results-RUN.jsonl files the suite wrote")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    runs = []
    for path in args.results:
        records = load(path)
        machine = find(records, "machine") or {}
        runs.append((str(machine.get("run", path.stem)), figures(records)))
    print(table(runs, args.markdown))


if __name__ == "__main__":
    main()
