"""`ffrtmp demo`: a master, two workers and a handful of real FFmpeg jobs, watched live, then a summary."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ffrtmp.cli.common import console
from ffrtmp.client import TERMINAL
from ffrtmp.diagnosis import how_to_get, unrunnable
from ffrtmp.errors import JobFailed
from ffrtmp.views import add_row, column_table, jobs_table, nodes_table, status_text, wait_reasons

SAMPLE_JOBS: list[dict[str, Any]] = [
    {"scenario": "demo-live", "queue": "live", "priority": "high", "resolution": "320x180", "duration": 2,
     "codec": "h264", "bitrate": "800k"},
    {"scenario": "demo-hevc", "queue": "default", "priority": "high", "resolution": "320x180", "duration": 2,
     "codec": "h265", "bitrate": "600k"},
    {"scenario": "demo-vp9", "queue": "default", "priority": "medium", "resolution": "320x180", "duration": 2,
     "codec": "vp9", "bitrate": "500k"},
    {"scenario": "demo-av1", "queue": "default", "priority": "low", "resolution": "320x180", "duration": 1,
     "codec": "av1", "bitrate": "400k"},
    {"scenario": "demo-batch", "queue": "batch", "priority": "low", "resolution": "640x360", "duration": 3,
     "codec": "h264", "bitrate": "1500k"},
    {"scenario": "demo-dry-run", "queue": "batch", "priority": "medium", "engine": "null"},
]


def demo(
    workers: int = typer.Option(2, "--workers", min=1, max=8, help="Local workers to start."),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary directory (database, logs, outputs)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Give up after this many seconds."),
    ffmpeg: str = typer.Option(None, "--ffmpeg", envvar="FFRTMP_FFMPEG",
                               help="The ffmpeg binary its workers use. Default: PATH, then the bundled one."),
) -> None:
    """Start an embedded master and local workers, run sample jobs with a live view, print a summary."""
    from ffrtmp.local import LocalCluster

    root = Path(tempfile.mkdtemp(prefix="ffrtmp-demo-"))
    started = time.monotonic()
    try:
        with LocalCluster(root) as cluster:
            console.print(f"[bold]ffrtmp demo[/] in {escape(str(root))}", highlight=False)
            url = cluster.start_master()
            console.print(f"master listening on {url} (CURVE on, SQLite at {cluster.master_dir / 'master.db'})",
                          highlight=False, markup=False)
            names = [f"demo-worker-{i + 1}" for i in range(workers)]
            for name in names:
                cluster.start_worker(name, *(["--ffmpeg", ffmpeg] if ffmpeg else []))
            cluster.wait_for_nodes(names)
            with cluster.client() as client:
                ids = client.submit_many(SAMPLE_JOBS)
                submitted = time.monotonic()
                console.print(f"submitted {len(ids)} jobs across the live, default and batch queues")
                jobs = _watch(client, ids, timeout)
                waited = time.monotonic() - submitted
                console.print()
                nodes = client.nodes()
            console.print(nodes_table(nodes, console.width))
        console.print(_summary(jobs, time.monotonic() - started))
    finally:
        if keep:
            console.print(f"kept {root}", highlight=False, markup=False)
        else:
            shutil.rmtree(root, ignore_errors=True)
    blocked = [job for job in jobs if unrunnable(job)]
    if blocked:
        raise JobFailed(cannot_run_message(blocked, len(jobs), waited, ffmpeg))
    failed = [job for job in jobs if job["status"] != "completed"]
    if failed:
        why = failed[0].get("error") or failed[0].get("reason") or failed[0]["status"]
        raise JobFailed(f"{len(failed)} of {len(jobs)} demo jobs did not complete: {why}")


def cannot_run_message(blocked: list[dict[str, Any]], total: int, waited: float, ffmpeg: str | None) -> str:
    """What the demo's workers lack and how to get it, once per distinct cause."""
    from ffrtmp.worker.capabilities import detect

    local = detect(None, ffmpeg, validate=False)  # the lookup each local worker made, without test encodes
    causes: dict[str, list[dict[str, Any]]] = {}
    for job in blocked:
        causes.setdefault(how_to_get(job, local), []).append(job)
    lines = [f"{len(blocked)} of {total} demo jobs cannot run on this machine's workers (seen after {waited:.1f}s):"]
    for fix, jobs in causes.items():
        reasons = sorted({str(unrunnable(job)) for job in jobs})
        lines.append(f"  {', '.join(job['scenario'] for job in jobs)}: {'; '.join(reasons)}")
        lines.append(f"    missing: {fix}")
    return "\n".join(lines)


STUCK_AFTER = 1.0
"""A job no connected worker can run, for this long, ends the demo: its workers are all up, none will come."""


def _watch(client: Any, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Show the jobs live until all end, one cannot run on any of the demo's workers, or `timeout`."""
    deadline = time.monotonic() + timeout
    jobs = [client.get(job_id) for job_id in ids]
    view = jobs_table(jobs, title="jobs", width=console.width)
    stuck_since: dict[str, float] = {}
    with Live(view, console=console, refresh_per_second=8, transient=False) as live:
        while not all(job["status"] in TERMINAL for job in jobs):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            jobs = [job if job["status"] in TERMINAL else client.get(job["id"]) for job in jobs]
            stats = client.stats()
            header = Text(f"{stats['nodes']['busy_slots']}/{stats['nodes']['slots']} slots busy · "
                          f"{stats['jobs']['pending']} pending · {stats['jobs']['completed']} completed")
            live.update(Group(header, jobs_table(jobs, title="jobs", width=console.width), wait_reasons(jobs)))
            now = time.monotonic()
            for job in jobs:
                if unrunnable(job):
                    stuck_since.setdefault(job["id"], now)
                else:
                    stuck_since.pop(job["id"], None)
            if any(now - since >= STUCK_AFTER for since in stuck_since.values()):
                break
    return [client.get(job_id) for job_id in ids]


SUMMARY_COLUMNS = [("JOB", 0), ("SCENARIO", 0), ("QUEUE", 1), ("CODEC", 0), ("NODE", 0), ("STATUS", 0),
                   ("TRY", 0), ("RUN TIME", 0), ("FPS", 0), ("OUTPUT", 1)]


def _summary(jobs: list[dict[str, Any]], wall: float) -> Table:
    done = sum(1 for job in jobs if job["status"] == "completed")
    table, keep = column_table(SUMMARY_COLUMNS, console.width, f"summary: {done}/{len(jobs)} completed in {wall:.1f}s")
    for job in jobs:
        metrics = job.get("metrics") or {}
        size = metrics.get("output_bytes")
        add_row(table, keep, [
            job["id"][:8], job["scenario"], f"{job['queue']}/{job['priority']}",
            "-" if job["engine"] == "null" else str(job["params"].get("codec")), job.get("node") or "-",
            status_text(job["status"]), str(job["attempts"]),
            f"{metrics['wall_seconds']:.2f}s" if "wall_seconds" in metrics else "-",
            f"{metrics['avg_fps']:.0f}" if "avg_fps" in metrics else "-", f"{size / 1024:.0f} KiB" if size else "-"])
    return table
