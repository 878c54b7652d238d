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
from rich.table import Table
from rich.text import Text

from ffrtmp.cli.common import console
from ffrtmp.client import TERMINAL
from ffrtmp.errors import JobFailed
from ffrtmp.views import add_row, column_table, jobs_table, nodes_table, status_text

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
) -> None:
    """Start an embedded master and local workers, run sample jobs with a live view, print a summary."""
    from ffrtmp.local import LocalCluster

    root = Path(tempfile.mkdtemp(prefix="ffrtmp-demo-"))
    started = time.monotonic()
    try:
        with LocalCluster(root) as cluster:
            console.print(f"[bold]ffrtmp demo[/] in {root}", highlight=False)
            url = cluster.start_master()
            console.print(f"master listening on {url} (CURVE on, SQLite at {cluster.master_dir / 'master.db'})",
                          highlight=False)
            names = [f"demo-worker-{i + 1}" for i in range(workers)]
            for name in names:
                cluster.start_worker(name)
            cluster.wait_for_nodes(names)
            with cluster.client() as client:
                ids = client.submit_many(SAMPLE_JOBS)
                console.print(f"submitted {len(ids)} jobs across the live, default and batch queues")
                jobs = _watch(client, ids, timeout)
                console.print()
                nodes = client.nodes()
            console.print(nodes_table(nodes, console.width))
        console.print(_summary(jobs, time.monotonic() - started))
    finally:
        if keep:
            console.print(f"kept {root}", highlight=False)
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [job for job in jobs if job["status"] != "completed"]
    if failed:
        raise JobFailed(f"{len(failed)} of {len(jobs)} demo jobs did not complete: {failed[0].get('error')}")


def _watch(client: Any, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    jobs = [client.get(job_id) for job_id in ids]
    view = jobs_table(jobs, title="jobs", width=console.width)
    with Live(view, console=console, refresh_per_second=8, transient=False) as live:
        while not all(job["status"] in TERMINAL for job in jobs):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            jobs = [job if job["status"] in TERMINAL else client.get(job["id"]) for job in jobs]
            stats = client.stats()
            header = Text(f"{stats['nodes']['busy_slots']}/{stats['nodes']['slots']} slots busy · "
                          f"{stats['jobs']['pending']} pending · {stats['jobs']['completed']} completed")
            live.update(Group(header, jobs_table(jobs, title="jobs", width=console.width)))
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
