"""`ffrtmp recommend`: the cheapest measured encoder and bitrate expected to meet a quality target
(the master answers from its history: ffrtmp/recommend.py)."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ffrtmp.cli.common import Connection, console, print_json, with_connection
from ffrtmp.errors import InvalidInput

SHOWN = {"psnr_db": "PSNR", "vmaf": "VMAF"}


def _number(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def measurements_table(answer: dict[str, Any]) -> Table:
    metric = SHOWN.get(answer["metric"], answer["metric"])
    table = Table(title="measurements used", header_style="bold", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("ENCODER", "PRESET", "BITRATE", metric, "COST/S", "J/S", "CPU S/S", "JOB"):
        table.add_column(column)
    for encoder in answer["encoders"]:
        for point in sorted(encoder["measurements"], key=lambda p: p["bitrate_kbps"]):
            cost = point["cost_per_s"]
            table.add_row(encoder["encoder"], encoder["preset"] or "-", f"{point['bitrate_kbps']}k",
                          f"{point['quality']:.2f}",
                          "-" if cost is None else f"{cost:.6f} {point['currency'] or ''}".strip(),
                          _number(point["energy_joules_per_s"], "{:.2f}"),
                          _number(point["cpu_seconds_per_s"], "{:.3f}"), point["job"][:8])
    return table


def print_answer(answer: dict[str, Any]) -> None:
    metric, target = SHOWN.get(answer["metric"], answer["metric"]), answer["target"]
    console.print(f"target {metric} ≥ {target:g} at {answer['resolution']} {answer['fps']} fps", highlight=False)
    if answer["encoders"]:
        console.print(measurements_table(answer))
    for encoder in answer["encoders"]:
        name = encoder["encoder"] + (f" ({encoder['preset']})" if encoder["preset"] else "")
        if encoder["status"] == "ok":
            cost = encoder["cost_per_s"]
            console.print(f"{escape(name)}: {encoder['bitrate']} expected to meet it (between the measured "
                          f"{' and '.join(f'{r}k' for r in encoder['around'])})"
                          + ("" if cost is None else f", {cost:.6f} {encoder['currency']} per second of video"),
                          highlight=False)
        else:
            console.print(f"{escape(name)}: not enough: {escape(encoder['note'])}", highlight=False)
    chosen = answer["recommendation"]
    if chosen is not None:
        console.print(f"[bold]recommended: {escape(chosen['encoder'])} at {chosen['bitrate']}[/] "
                      f"(cheapest by {chosen['cheapest_by'].replace('_', ' ')})", highlight=False)
        console.print(f"  {escape(chosen['command'])}", highlight=False, soft_wrap=True)
    else:
        console.print("[bold]no recommendation[/]: the history is too thin for this target.", highlight=False)
    if answer["sweeps"]:
        console.print("to measure enough, run:", highlight=False)
        for command in answer["sweeps"]:
            console.print(f"  {escape(command)}", highlight=False, soft_wrap=True)


@with_connection
def recommend(
    conn: Connection,
    resolution: str = typer.Option(..., "--resolution", help="WIDTHxHEIGHT the encodes were made at."),
    fps: int = typer.Option(..., "--fps", help="Their frame rate."),
    target_vmaf: float = typer.Option(None, "--target-vmaf", help="The VMAF (0-100) the encode must reach."),
    target_psnr: float = typer.Option(None, "--target-psnr", help="Or the PSNR (dB) it must reach."),
    codec: str = typer.Option(None, "--codec", help="Only this codec or encoder (default: every one measured)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The cheapest measured encoder and bitrate expected to meet a quality target, from completed jobs."""
    if (target_vmaf is None) == (target_psnr is None):
        raise InvalidInput("target-vmaf", "give exactly one of --target-vmaf and --target-psnr")
    with conn.client() as client:
        answer = client.recommend(resolution, fps, target_vmaf=target_vmaf, target_psnr=target_psnr, codec=codec)
    if json_output:
        print_json(answer)
    else:
        print_answer(answer)
