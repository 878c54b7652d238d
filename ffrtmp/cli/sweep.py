"""`ffrtmp jobs sweep`: one job per combination of bitrates × codecs (× presets), under one group id.

The jobs carry the label `group=ID` (jobspec.GROUP_LABEL: a mark, not a worker requirement), so
`ffrtmp report --group ID` compares them and `ffrtmp recommend` learns from their measurements.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

import typer
from rich import box
from rich.live import Live
from rich.table import Table

from ffrtmp.cli.common import Connection, console, print_json, with_connection
from ffrtmp.client import TERMINAL, Client, retry_after
from ffrtmp.errors import InvalidInput, JobFailed, RateLimited
from ffrtmp.jobspec import CLIENT_SIDE, GROUP_LABEL, parse_labels, validate_submission
from ffrtmp.units import parse_bitrate

MAX_COMBINATIONS = 1000
"""Jobs one sweep may make (a typo in a list should not queue a million encodes)."""
POLL = 0.5
"""Seconds between looks at the group's jobs while --wait shows them, at least."""
READS_PER_SECOND = 100.0
"""How fast --wait reads a big group's jobs, at most: well inside a key's read rate limit (ratelimit.py)."""
QUALITY_COLUMNS = (("psnr_db", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("vmaf", "VMAF", "{:.2f}"))


def new_group_id() -> str:
    """Short enough to type (`report --group ID`), random enough never to meet another sweep's."""
    return secrets.token_hex(4)


def split_list(field: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise InvalidInput(field, f"{text!r} must be a comma-separated list with no empty items")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise InvalidInput(field, f"{repeated[0]!r} is given twice")
    return items


def sweep_jobs(common: dict[str, Any], bitrates: list[str], codecs: list[str],
               presets: list[str | None]) -> list[dict[str, Any]]:
    """Every combination as a submission, each checked; an error names the list and the item at fault."""
    for bitrate in bitrates:
        parse_bitrate(bitrate, field=f"bitrates: {bitrate}")
    count = len(bitrates) * len(codecs) * len(presets)
    if count > MAX_COMBINATIONS:
        raise InvalidInput("bitrates", f"{count} combinations; a sweep makes at most {MAX_COMBINATIONS} jobs")
    jobs = []
    for codec, preset, bitrate in itertools.product(codecs, presets, bitrates):
        job = {**common, "codec": codec, "bitrate": bitrate, **({"preset": preset} if preset else {})}
        try:
            validate_submission(job, output_roots=CLIENT_SIDE)
        except InvalidInput as exc:
            named = {"codec": f"codecs: {codec}", "preset": f"presets: {preset}", "bitrate": f"bitrates: {bitrate}"}
            raise InvalidInput(named.get(exc.field, exc.field), exc.problem) from None
        jobs.append(job)
    return jobs


def group_table(group: str, jobs: list[dict[str, Any]]) -> Table:
    """One row per combination: its setting, status, and what it measured once done."""
    counts = {s: sum(1 for j in jobs if j["status"] == s) for s in ("completed", "failed", "canceled")}
    running = sum(1 for j in jobs if j["status"] in ("assigned", "running"))
    table = Table(title=f"sweep {group}: {counts['completed']} done · {counts['failed'] + counts['canceled']} "
                        f"failed · {running} running · {len(jobs)} in all",
                  header_style="bold", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("JOB", "CODEC", "PRESET", "BITRATE", "STATUS", "ENCODER", "FPS",
                   *(title for _, title, _ in QUALITY_COLUMNS)):
        table.add_column(column)
    for job in jobs:
        params, metrics = job.get("params") or {}, job.get("metrics") or {}
        status = job["status"]
        if status == "running" and job.get("progress") is not None:
            status = f"running {job['progress']:.0%}"
        style = {"completed": "green", "failed": "red", "canceled": "red"}.get(job["status"], "")
        table.add_row(job["id"][:8], str(params.get("codec", "")), str(params.get("preset") or "-"),
                      str(params.get("bitrate", "")), f"[{style}]{status}[/]" if style else status,
                      str(metrics.get("encoder", "-")), _shown(metrics.get("fps"), "{:.0f}"),
                      *(_shown(metrics.get(key), fmt) for key, _, fmt in QUALITY_COLUMNS))
    return table


def _shown(value: Any, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def wait_for_group(client: Client, group: str, ids: list[str], live: bool) -> list[dict[str, Any]]:
    """Poll the group's jobs until each has ended; with `live`, a table of them refreshed meanwhile."""
    jobs = {job_id: client.get(job_id) for job_id in ids}

    def unfinished() -> list[str]:
        return [job_id for job_id, job in jobs.items() if job["status"] not in TERMINAL]

    if not live:
        for job_id in unfinished():
            jobs[job_id] = client.wait(job_id)
        return list(jobs.values())
    with Live(group_table(group, list(jobs.values())), console=console, refresh_per_second=4) as view:
        while pending := unfinished():
            time.sleep(max(POLL, len(pending) / READS_PER_SECOND))
            for job_id in pending:
                try:
                    jobs[job_id] = client.get(job_id)
                except RateLimited as exc:  # the key shares its budget with others: wait, then go on
                    time.sleep(retry_after(str(exc), POLL))
                    break
            view.update(group_table(group, list(jobs.values())))
    return list(jobs.values())


@with_connection(timeout_flag="--connect-timeout")
def sweep(
    conn: Connection,
    scenario: str = typer.Option(..., "--scenario", help="A preset from `ffrtmp scenarios`, or any label."),
    bitrates: str = typer.Option(..., "--bitrates", help="Comma-separated, e.g. 1M,2M,4M or 500k,1000k."),
    codecs: str = typer.Option(..., "--codecs", help="Comma-separated codecs or encoder names, e.g. h264,h265."),
    presets: str = typer.Option(None, "--presets", help="Comma-separated encoder presets (each one a curve)."),
    quality: str = typer.Option(None, "--quality", help="none, basic (PSNR, SSIM) or vmaf: what each job measures."),
    resolution: str = typer.Option(None, "--resolution", help="WIDTHxHEIGHT, e.g. 1280x720."),
    fps: int = typer.Option(None, "--fps"),
    duration: str = typer.Option(None, "--duration", help="Seconds of video (or 90s, 2m)."),
    input_: str = typer.Option(None, "--input", help="A file or URL (default: a generated test source)."),
    engine: str = typer.Option(None, "--engine", help="auto, ffmpeg, gstreamer or null."),
    queue: str = typer.Option(None, "--queue", help="live, default or batch."),
    priority: str = typer.Option(None, "--priority", help="high, medium or low."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE a worker must offer (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Show the group until every job ended; exit 1 if any failed."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Submit one job per bitrate × codec (× preset) under a new group id, printed first."""
    labels = parse_labels(label)
    if GROUP_LABEL in labels:
        raise InvalidInput("label", f"{GROUP_LABEL!r} is the sweep's own label (its new group id)")
    group = new_group_id()
    options = {"scenario": scenario, "resolution": resolution, "fps": fps, "duration": duration, "input": input_,
               "engine": engine, "queue": queue, "priority": priority, "quality": quality,
               "labels": {**labels, GROUP_LABEL: group}}
    common = {key: value for key, value in options.items() if value is not None}
    preset_list: list[str | None] = list(split_list("presets", presets)) if presets is not None else [None]
    jobs = sweep_jobs(common, split_list("bitrates", bitrates), split_list("codecs", codecs), preset_list)
    if not json_output:
        console.print(group, highlight=False)
    with conn.client() as client:
        ids = list(client.submit_many(jobs, key=f"sweep-{group}"))
        if not wait:
            if json_output:
                print_json({"group": group, "ids": ids})
            else:
                for job_id in ids:
                    console.print(job_id, highlight=False)
            return
        finals = wait_for_group(client, group, ids, live=console.is_terminal and not json_output)
    if json_output:
        print_json({"group": group, "jobs": finals})
    else:
        console.print(group_table(group, finals))
    failed = [job for job in finals if job["status"] != "completed"]
    if failed:
        raise JobFailed(f"{len(failed)} of {len(finals)} jobs of sweep {group} did not complete (first: "
                        f"{failed[0]['id']} {failed[0]['status']}: {failed[0].get('error') or 'no error recorded'})")
