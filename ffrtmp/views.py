"""Rich tables and progress displays. Plain text (no colour codes) when the output is not a terminal."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ffrtmp.units import format_duration

STATUS_STYLE = {
    "pending": "yellow",
    "assigned": "cyan",
    "running": "bold blue",
    "completed": "green",
    "failed": "bold red",
    "canceled": "magenta",
    "online": "green",
    "draining": "yellow",
    "offline": "red",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def parse_iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def ago(value: str | None) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "-"
    return format_duration((dt.datetime.now(dt.UTC) - moment).total_seconds()) + " ago"


def elapsed(job: dict[str, Any]) -> float | None:
    start, end = parse_iso(job.get("started_at")), parse_iso(job.get("finished_at"))
    if start is None:
        return None
    return ((end or dt.datetime.now(dt.UTC)) - start).total_seconds()


def progress_cell(job: dict[str, Any], width: int = 12) -> Text:
    progress = job.get("progress")
    if job["status"] == "completed":
        progress = 1.0
    if progress is None:
        return Text("-")
    filled = int(round(progress * width))
    return Text("█" * filled + "░" * (width - filled) + f"{progress * 100:4.0f}%",
                style="green" if progress >= 1 else "blue")


def tier(width: int) -> int:
    """0 for pipes and 80-column terminals, 1 from 100 columns, 2 from 130: wider screens get more columns."""
    return 2 if width >= 130 else 1 if width >= 100 else 0


MIN_WIDTH = {"ID": 8, "JOB": 8, "STATUS": 9, "TIME": 6, "RUN TIME": 8, "TRY": 3, "FPS": 4, "SLOTS": 5}
"""Columns that must never be cut short (the rest share what is left)."""


def column_table(columns: list[tuple[str, int]], width: int, title: str | None = None) -> tuple[Table, list[bool]]:
    """A table with the columns whose tier fits `width`; returns it with a keep-mask for building rows."""
    level = tier(width)
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    keep = [needed <= level for _, needed in columns]
    for (name, _), kept in zip(columns, keep, strict=True):
        if kept:
            table.add_column(name, no_wrap=True, overflow="ellipsis", min_width=MIN_WIDTH.get(name),
                             max_width=None if name == "NOTE" else 40 if level else 12)
    return table, keep


def add_row(table: Table, keep: list[bool], cells: list[Any]) -> None:
    table.add_row(*(cell for cell, kept in zip(cells, keep, strict=True) if kept))


JOB_COLUMNS = [("ID", 0), ("STATUS", 0), ("SCENARIO", 0), ("QUEUE", 0), ("PRIO", 1), ("NODE", 0), ("TRY", 1),
               ("PROGRESS", 0), ("FPS", 1), ("SPEED", 2), ("ETA", 1), ("TIME", 0), ("ENGINE", 2), ("CREATED", 2),
               ("NOTE", 2)]


def eta(job: dict[str, Any]) -> float | None:
    """Seconds left for a running job, from its progress so far."""
    progress, spent = job.get("progress"), elapsed(job)
    if job["status"] != "running" or not progress or spent is None or progress >= 1:
        return None
    return float(spent * (1 - progress) / progress)


def jobs_table(jobs: list[dict[str, Any]], title: str | None = None, width: int = 120) -> Table:
    """The jobs listing; on narrow screens (and pipes, 80 columns) the less useful columns go first."""
    table, keep = column_table(JOB_COLUMNS, width, title)
    for job in jobs:
        metrics = job.get("metrics") or {}
        fps = metrics.get("fps") or metrics.get("avg_fps")
        speed = metrics.get("speed")
        note = job.get("reason") or job.get("error") or ""
        add_row(table, keep, [
            job["id"][:8], status_text(job["status"]), job["scenario"], job["queue"], job["priority"],
            job.get("node") or "-", str(job["attempts"]), progress_cell(job, 10 if tier(width) else 5),
            f"{fps:.0f}" if isinstance(fps, int | float) else "-",
            f"{speed:.2f}x" if isinstance(speed, int | float) else "-", format_duration(eta(job)),
            format_duration(elapsed(job)),
            metrics.get("engine") or job["engine"], ago(job["created_at"]), Text(str(note)[:100], style="dim")])
    return table


def wait_reasons(jobs: list[dict[str, Any]]) -> Text:
    """One line per pending job with a wait reason: the jobs table drops its NOTE column on narrow screens."""
    text = Text()
    for job in jobs:
        if job["status"] == "pending" and job.get("reason"):
            text.append(f"{job['id'][:8]} {job['scenario']} waits: ", style="yellow")
            text.append(f"{job['reason']}\n")
    return text


def job_detail(job: dict[str, Any], log_tail: list[dict[str, Any]] | None = None) -> Group:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    params = job.get("params", {})
    rows: list[tuple[str, Any]] = [
        ("id", job["id"]),
        ("status", status_text(job["status"])),
        ("scenario", job["scenario"]),
        ("queue / priority", f"{job['queue']} / {job['priority']}"),
        ("engine", job["engine"]),
        ("params", ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)),
        ("labels", ", ".join(f"{k}={v}" for k, v in job.get("labels", {}).items()) or "-"),
        ("node", job.get("node") or "-"),
        ("attempts", f"{job['attempts']} (max retries {job['max_retries']})"),
        ("progress", progress_cell(job, 20)),
        ("created", job["created_at"]),
        ("started", job.get("started_at") or "-"),
        ("finished", job.get("finished_at") or "-"),
        ("output", job.get("output") or "-"),
    ]
    if job.get("reason"):
        rows.append(("waiting", Text(job["reason"], style="yellow")))
    if job.get("error"):
        rows.append(("error", Text(f"[{job.get('failure') or 'error'}] {job['error']}", style="red")))
    metrics = {k: v for k, v in (job.get("metrics") or {}).items() if v is not None}
    if metrics:
        rows.append(("metrics", ", ".join(f"{k}={v}" for k, v in metrics.items())))
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else str(value))
    parts: list[Any] = [Panel(grid, title=f"job {job['id'][:8]}", expand=False)]
    history = job.get("history") or []
    if history:
        timeline = Table(title="history", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False)
        for column in ("AT", "STATUS", "TRY", "NODE", "REASON"):
            timeline.add_column(column)
        for event in history:
            timeline.add_row(event["at"], status_text(event["status"]), str(event.get("attempt") or "-"),
                             event.get("node") or "-", event.get("reason") or "")
        parts.append(timeline)
    if log_tail:
        lines = Text("\n".join(line["line"] for line in log_tail), style="dim")
        parts.append(Panel(lines, title="last log lines", expand=False))
    return Group(*parts)


def _bar(percent: float | None, width: int = 10) -> Text:
    if percent is None:
        return Text("-")
    filled = int(round(min(100.0, max(0.0, percent)) / 100 * width))
    style = "red" if percent > 90 else "yellow" if percent > 70 else "green"
    return Text("▮" * filled + "▯" * (width - filled) + f"{percent:4.0f}%", style=style)


NODE_COLUMNS = [("NAME", 0), ("STATUS", 0), ("SLOTS", 0), ("ENGINES", 1), ("ENCODERS", 0), ("CPU", 0),
                ("MEMORY", 0), ("LABELS", 2), ("LAST SEEN", 1)]


def nodes_table(nodes: list[dict[str, Any]], width: int = 120) -> Table:
    table, keep = column_table(NODE_COLUMNS, width)
    bar = 10 if tier(width) else 0
    for node in nodes:
        resources = node.get("resources") or {}
        encoders = node.get("encoders") or {}
        usable = sorted(name for name, info in encoders.items() if isinstance(info, dict) and info.get("available"))
        hardware = [n for n in usable if encoders[n].get("hardware")]
        add_row(table, keep, [
            node["name"], status_text(node["status"]), f"{node.get('running', 0)}/{node['slots']}" + _queued(node),
            ",".join(node.get("engines", [])),
            f"{len(usable)} usable" + (f" ({', '.join(hardware)})" if hardware else ""),
            _bar(resources.get("cpu_percent"), bar), _bar(resources.get("memory_percent"), bar),
            ",".join(f"{k}={v}" for k, v in (node.get("labels") or {}).items()) or "-", ago(node.get("last_seen"))])
    return table


def _queued(node: dict[str, Any]) -> str:
    """The prefetched jobs a node holds (they start when its slots free), when there are any."""
    return f" +{node['queued']} queued" if node.get("queued") else ""


def node_detail(node: dict[str, Any]) -> Group:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    resources = node.get("resources") or {}
    for key, value in (
        ("name", node["name"]), ("status", status_text(node["status"])), ("version", node.get("version")),
        ("slots", f"{node.get('running', 0)} busy of {node['slots']}" + _queued(node)),
        ("engines", ", ".join(node["engines"])),
        ("labels", ", ".join(f"{k}={v}" for k, v in (node.get("labels") or {}).items()) or "-"),
        ("cpu", _bar(resources.get("cpu_percent"), 20)), ("memory", _bar(resources.get("memory_percent"), 20)),
        ("disk free", f"{resources.get('disk_free', 0) / 2**30:.1f} GiB" if resources.get("disk_free") else "-"),
        ("gpus", ", ".join(g.get("name", "?") for g in resources.get("gpus", [])) or "none"),
        ("jobs", ", ".join(j[:8] for j in node.get("jobs", [])) or "-"),
        ("first seen", node.get("first_seen")), ("last seen", ago(node.get("last_seen"))),
    ):
        grid.add_row(key, value if isinstance(value, Text) else str(value))
    return Group(Panel(grid, title=f"node {node['name']}", expand=False), encoders_table(node.get("encoders") or {}))


def encoders_table(encoders: dict[str, Any]) -> Table:
    """FFmpeg encoders and GStreamer elements, one engine after the other, each best first."""
    table = Table(title="encoders", header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("ENGINE", "ENCODER", "CODEC", "KIND", "USABLE", "WHY NOT"):
        table.add_column(column)
    entries = [(str(info.get("engine") or "ffmpeg"), order, name, info)
               for order, (name, info) in enumerate(encoders.items()) if isinstance(info, dict)]
    for engine, _, name, info in sorted(entries, key=lambda entry: (entry[0], entry[1])):
        table.add_row(engine, name, str(info.get("codec")), "hardware" if info.get("hardware") else "software",
                      Text("yes", style="green") if info.get("available") else Text("no", style="red"),
                      info.get("reason") or "")
    return table


def job_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[detail]}"), TimeRemainingColumn())


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    top = max(values) if values else 0
    if top == 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, round(v / top * (len(SPARKS) - 1)))] for v in values)


def cluster_view(url: str, stats: dict[str, Any], nodes: list[dict[str, Any]], width: int) -> Group:
    """`ffrtmp top`: the cluster on one screen."""
    jobs, slots = stats["jobs"], stats["nodes"]
    header = Text.assemble(
        ("ffrtmp top", "bold"), f"  {url}  ", (dt.datetime.now().strftime("%H:%M:%S"), "dim"), "\n",
        ("jobs ", "bold"), f"{jobs['pending']} pending · {jobs['assigned'] + jobs['running']} running · "
        f"{jobs['completed']} completed · ", (f"{jobs['failed']} failed", "red" if jobs["failed"] else ""),
        f" · {jobs['canceled']} canceled   ", ("nodes ", "bold"),
        f"{slots['total']} online · {slots['busy_slots']}/{slots['slots']} slots busy")
    table, keep = column_table(TOP_NODE_COLUMNS, width, "nodes")
    for node in nodes:
        resources = node.get("resources") or {}
        busy = 100.0 * node.get("running", 0) / max(1, node["slots"])
        add_row(table, keep, [node["name"], status_text(node["status"]),
                              Text(f"{node.get('running', 0)}/{node['slots']} ").append(_bar(busy, 8)),
                              _bar(resources.get("cpu_percent"), 8), _bar(resources.get("memory_percent"), 8),
                              ", ".join(j[:8] for j in node.get("jobs", [])) or "-"])
    queues = Table(title="queue depth (pending)", header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("QUEUE", "HIGH", "MEDIUM", "LOW"):
        queues.add_column(column, justify="right" if column != "QUEUE" else "left")
    for queue in ("live", "default", "batch"):
        depth = stats.get("queues", {}).get(queue, {})
        queues.add_row(queue, *(str(depth.get(p, 0)) for p in ("high", "medium", "low")))
    activity = stats.get("activity", {"completed": [], "failed": []})
    done, failed = activity["completed"], activity["failed"]
    ended = sum(done) + sum(failed)
    rate = Table.grid(padding=(0, 2))
    rate.add_row(Text("completed/min", style="bold"), Text(sparkline(done), style="green"),
                 f"{done[-1] if done else 0} now, {sum(done) / max(1, len(done)):.1f} avg")
    rate.add_row(Text("failed/min", style="bold"), Text(sparkline(failed), style="red"),
                 f"{failed[-1] if failed else 0} now, failure rate {100 * sum(failed) / max(1, ended):.1f}%")
    activity_panel = Panel(rate, title=f"last {len(done)} minutes", expand=False)
    return Group(header, table, Columns([queues, activity_panel], padding=(0, 4)))


TOP_NODE_COLUMNS = [("NAME", 0), ("STATUS", 0), ("SLOTS", 0), ("CPU", 0), ("MEMORY", 0), ("JOBS", 1)]
