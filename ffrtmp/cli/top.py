"""`ffrtmp top`: the cluster on one screen, refreshed live."""

from __future__ import annotations

import time

import typer
from rich.console import Group
from rich.live import Live

from ffrtmp.cli.common import Connection, console, with_connection
from ffrtmp.client import Client
from ffrtmp.views import cluster_view


@with_connection
def top(
    conn: Connection,
    interval: float = typer.Option(1.0, "--interval", min=0.2, help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
) -> None:
    """Nodes with slot use and CPU/memory, queue depth per queue and priority, jobs/min and failure rate."""
    with conn.client() as client:
        if once:
            console.print(_frame(client))
            return
        with Live(_frame(client), console=console, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(_frame(client))
            except KeyboardInterrupt:
                pass


def _frame(client: Client) -> Group:
    return cluster_view(client.master, client.stats(), client.nodes(), console.width)
