#!/usr/bin/env python3
"""All the side-by-side benchmarks in one run: JSON lines, a summary table, docs/benchmarks.md and .png.

Parts (each a script of its own in this directory, run as a child process so that one failing does not
stop the others; a failure becomes an `error` line):
  compare   ffrtmp (compare_ffrtmp.py), then Celery, RQ, Dramatiq and Huey (compare_peers.py, one child
            each, on one private redis-server with persistence off): throughput and latency
  overhead  40 real FFmpeg transcodes through ffrtmp vs `xargs -P 2` (overhead.py)
  scale     1,000 simulated workers, a store of 1,000,000 jobs, `jobs list` (scale.py)
  quality   the quality pass's overhead at 720p30, basic and vmaf (quality.py; not in the default parts)
Every JSON line gets `run` (this run's UTC time) and `part`; all of them are also written to
build/bench/results-RUN.jsonl. Use `scripts/bench/run`, which sets up the bench venv first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from benchlib import BENCH, ROOT, redis_server

PEERS = ("celery", "rq", "dramatiq", "huey")
PART_TIMEOUT = 3600


def machine(run: str) -> dict[str, Any]:
    def first_line(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            return ""

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "ffrtmp"])
    return {"bench": "machine", "run": run, "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(memory, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "redis": first_line(["redis-server", "--version"]).split(" sha=")[0],
            "ffmpeg": " ".join(first_line(["ffmpeg", "-version"]).split()[:3]),
            "git": f"commit {commit}" + (" with uncommitted changes under ffrtmp/" if dirty else "")}


class Suite:
    def __init__(self, run: str, results: Path) -> None:
        self.run = run
        self.results = results
        self.records: list[dict[str, Any]] = []
        results.parent.mkdir(parents=True, exist_ok=True)

    def record(self, record: dict[str, Any], part: str) -> None:
        record = {**record, "run": self.run, "part": part}
        self.records.append(record)
        line = json.dumps(record, ensure_ascii=False)
        print(line, flush=True)
        with self.results.open("a") as out:
            out.write(line + "\n")

    def step(self, part: str, script: str, args: list[str], system: str | None = None) -> None:
        """Run one benchmark script; its JSON lines become records, a failure an `error` record."""
        argv = [sys.executable, str(BENCH / script), *args]
        print(f"# {part}: {shlex.join(argv[1:])}", file=sys.stderr, flush=True)
        with tempfile.TemporaryFile("w+") as errors:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True)
            assert proc.stdout is not None
            deadline = time.monotonic() + PART_TIMEOUT
            for line in proc.stdout:
                try:
                    record = json.loads(line)
                except ValueError:
                    print(line.rstrip(), file=sys.stderr)
                    continue
                self.record(record, part)
                if time.monotonic() > deadline:
                    break
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            errors.seek(0)
            tail = errors.read().strip().splitlines()[-15:]
        if code != 0:
            print("\n".join(tail), file=sys.stderr)
            self.record({"bench": "error", "system": system or part, "script": script,
                         "error": f"exit {code}: {tail[-1] if tail else ''}"[:500]}, part)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="compare,overhead,scale",
                        help="comma list of compare, overhead, scale, quality")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (minutes, not tens)")
    parser.add_argument("--systems", default="ffrtmp," + ",".join(PEERS), help="systems in the compare part")
    parser.add_argument("--jobs", type=int, help="throughput jobs per system (20000; quick 2000)")
    parser.add_argument("--singles", type=int, help="latency jobs per system (500; quick 100)")
    parser.add_argument("--slots", default="4,8,16,32", help="ffrtmp slots per worker (2 workers); several are "
                        "tried with --tune-jobs jobs each and the fastest kept, as for the peers")
    parser.add_argument("--threads", type=int, default=8, help="peer threads per worker process (where they have)")
    parser.add_argument("--variant", action="append", default=[], metavar="SYSTEM=NAME[:THREADS]",
                        help="a fixed peer worker setting instead of trying several (see compare_peers.py)")
    parser.add_argument("--tune-jobs", type=int, help="jobs per trial of each peer setting (5000; quick 1000; 0: off)")
    parser.add_argument("--redis-url", help="use this Redis for the peers (its db is emptied) instead of a private one")
    parser.add_argument("--transcodes", type=int, help="real transcodes per round (40; quick 8)")
    parser.add_argument("--rounds", type=int, help="overhead rounds, alternating ffrtmp and xargs (3; quick 1)")
    parser.add_argument("--quality-rounds", type=int, help="basic + vmaf jobs of the quality part (2; quick 1)")
    parser.add_argument("--scale-workers", type=int, help="simulated workers (1000; quick 200)")
    parser.add_argument("--scale-procs", type=int, default=4, help="processes they are spread over")
    parser.add_argument("--scale-seconds", type=float, help="measured seconds once all joined (180; quick 20)")
    parser.add_argument("--store-jobs", type=int, help="jobs in the scale store (1000000; quick 100000)")
    parser.add_argument("--profile", type=Path, help="py-spy ffrtmp's master and a worker during throughput here")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md and .png")
    parser.add_argument("--docs-only", action="store_true", help="measure nothing: rewrite docs/benchmarks.md and "
                        ".png from the results kept in docs/benchmarks.md")
    args = parser.parse_args()
    sizes = {"jobs": (20_000, 2_000), "singles": (500, 100), "transcodes": (40, 8), "rounds": (3, 1),
             "tune_jobs": (5000, 1000), "quality_rounds": (2, 1), "scale_workers": (1000, 200),
             "scale_seconds": (180.0, 20.0),
             "store_jobs": (1_000_000, 100_000)}
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def compare(suite: Suite, args: argparse.Namespace, systems: list[str]) -> None:
    if "ffrtmp" in systems:
        extra = ["--profile", str(args.profile)] if args.profile else []
        suite.step("compare", "compare_ffrtmp.py", ["--jobs", str(args.jobs), "--singles", str(args.singles),
                                                    "--slots", args.slots, "--tune-jobs", str(args.tune_jobs),
                                                    *extra], "ffrtmp")
    peers = [s for s in systems if s in PEERS]
    if not peers:
        return
    try:
        with redis_server(args.redis_url) as url:
            for system in peers:
                variants = [a for v in args.variant if v.startswith(system + "=") for a in ("--variant", v)]
                suite.step("compare", "compare_peers.py", ["--systems", system, "--jobs", str(args.jobs),
                                                           "--singles", str(args.singles), "--threads",
                                                           str(args.threads), "--tune-jobs", str(args.tune_jobs),
                                                           "--redis-url", url, *variants], system)
    except RuntimeError as exc:  # no redis-server: every peer is reported, the rest of the run goes on
        for system in peers:
            suite.record({"bench": "error", "system": system, "error": str(exc)}, "compare")


def main() -> None:
    args = parse_args()
    md, png = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png"
    command = ("scripts/bench/run " + shlex.join(sys.argv[1:])).strip()
    if args.docs_only:
        records = report.load_previous(md)
        print(report.summary(records), file=sys.stderr)
        report.write_docs(records, md, png, "(not recorded)")
        return
    run = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"compare", "overhead", "scale", "quality"}
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    suite = Suite(run, ROOT / "build" / "bench" / f"results-{run.replace(':', '')}.jsonl")
    suite.record({**machine(run), "command": command}, "machine")
    if "compare" in parts:
        compare(suite, args, [s.strip() for s in args.systems.split(",") if s.strip()])
    if "overhead" in parts:
        if shutil.which("ffmpeg") is None:
            suite.record({"bench": "error", "system": "overhead", "error": "ffmpeg is not installed"}, "overhead")
        else:
            suite.step("overhead", "overhead.py", ["--transcodes", str(args.transcodes), "--rounds", str(args.rounds)])
    if "scale" in parts:
        suite.step("scale", "scale.py", ["--workers", str(args.scale_workers), "--procs", str(args.scale_procs),
                                         "--seconds", str(args.scale_seconds), "--store-jobs", str(args.store_jobs)])
    if "quality" in parts:
        suite.step("quality", "quality.py", ["--rounds", str(args.quality_rounds)])
    records = report.merge(report.load_previous(md), suite.records, set(parts))
    print("\n" + report.summary(records), file=sys.stderr)
    print(f"\nresults: {suite.results}", file=sys.stderr)
    if not args.no_docs:
        report.write_docs(records, md, png, command)
        print(f"docs: {md.relative_to(ROOT)}, {png.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
