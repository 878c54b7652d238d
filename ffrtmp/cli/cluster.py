"""`ffrtmp cluster status`: which master leads, in which term, and every master seen."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich import box
from rich.table import Table

from ffrtmp.cli.common import Connection, console, print_json, with_connection
from ffrtmp.units import format_duration

app = typer.Typer(help="See the masters of a cluster and which one leads.", no_args_is_help=True,
                  rich_markup_mode=None)


def status_table(status: dict[str, Any], now: float) -> Table:
    leader = status.get("leader")
    title = (f"leader: {leader} (term {status.get('term')}, {status.get('address')})" if leader
             else f"no leader right now (last term {status.get('term')})")
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("MASTER", "ADDRESS", "ROLE", "LAST SEEN"):
        table.add_column(column)
    for master in status.get("masters", []):
        ago = max(0.0, now - float(master.get("last_seen") or 0.0))
        table.add_row(str(master.get("name")), str(master.get("address")), str(master.get("role")),
                      f"{format_duration(ago)} ago")
    return table


@app.command("status")
@with_connection
def status(conn: Connection, json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the leader, its term and every master (any master of the cluster answers, standbys too)."""
    with conn.client() as client:
        result = client.cluster()
    if json_output:
        print_json(result)
    else:
        console.print(status_table(result, time.time()))
