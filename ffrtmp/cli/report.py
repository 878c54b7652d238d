"""`ffrtmp report`: quality, speed, energy and cost of completed jobs, per scenario, codec, encoder, node,
tenant or sweep group (SPEC §9). The master aggregates in its database; this prints the groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from ffrtmp.cli.common import Connection, console, duration_option, print_json, with_connection

COLUMNS = (("JOBS", "jobs", "{:d}"), ("FPS", "fps", "{:.1f}"), ("SPEED", "speed", "{:.2f}"),
           ("KBIT/S", "bitrate_kbps", "{:.0f}"), ("PSNR", "psnr_db", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"),
           ("VMAF", "vmaf", "{:.2f}"), ("CPU S", "cpu_seconds", "{:.1f}"))
"""Header, report field, format: units in the headers, so the rows fit 80 columns."""


def energy_text(joules: float | None) -> str:
    return "-" if joules is None else f"{joules / 3600:.3g}"


def cost_text(cost: float | None, currency: str | None, shown: str | None) -> str:
    """The cost, with its currency when it is not the one the header names."""
    if currency == "mixed":
        return "mixed"  # no one sum of several currencies
    if cost is None:
        return "-"
    return f"{cost:.4g}" if currency == shown else f"{cost:.4g} {currency or ''}".rstrip()


def report_table(answer: dict[str, Any]) -> Table:
    groups = answer["groups"]
    currencies = {row["currency"] for row in groups if row["cost"] is not None or row["currency"]}
    shown = next(iter(currencies)) if len(currencies) == 1 else None
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column(answer["by"].upper())
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("WH", justify="right")
    table.add_column(f"COST {shown}" if shown and shown != "mixed" else "COST", justify="right")
    for row in groups:
        cells = [row["key"] if row["key"] is not None else "-"]
        cells += ["-" if row[key] is None else text.format(row[key]) for _, key, text in COLUMNS]
        cells += [energy_text(row["energy_joules"]), cost_text(row["cost"], row["currency"], shown)]
        table.add_row(*cells)
    return table


@with_connection
def report(
    conn: Connection,
    by: str = typer.Option("scenario", "--by", help="Group by scenario, codec, encoder, node, tenant or group "
                           "(a sweep's)."),
    since: str = typer.Option(None, "--since", help="Only jobs that ended in this window (e.g. 24h, 7d)."),
    group: str = typer.Option(None, "--group", help="Only the jobs of this sweep group (label group=ID)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    plot: Path = typer.Option(None, "--plot", help="Also draw rate–quality curves (bitrate against VMAF, else "
                              "PSNR; one per encoder) into this PNG. Needs ffrtmp[plots]."),
) -> None:
    """Completed jobs per group: jobs, fps, speed, bitrate, PSNR/SSIM/VMAF, CPU, energy and cost."""
    from ffrtmp.cli.report_plot import plot_curves, require_matplotlib

    window = duration_option(since, "since")
    if plot is not None:
        require_matplotlib()
    with conn.client() as client:
        answer = client.report(by=by, since=window, group=group, points=plot is not None)
    curves = None
    if plot is not None:
        title = f"rate–quality{f' of group {group}' if group else ''}{f' (last {since})' if since else ''}"
        curves = plot_curves(answer["points"], plot, title)
    if json_output:
        print_json(answer)
        return
    if not answer["groups"]:
        console.print("no completed jobs match", highlight=False)
    else:
        console.print(report_table(answer))
    if curves is not None:
        # the path as given, whole: never read as markup, never broken across lines
        console.print(f"{plot}: {curves} rate–quality curve{'s' if curves != 1 else ''}", highlight=False,
                      markup=False, soft_wrap=True)
