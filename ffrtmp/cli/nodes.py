"""`ffrtmp nodes …`: list, show, drain, forget."""

from __future__ import annotations

import typer

from ffrtmp.cli.common import Connection, console, print_json, with_connection
from ffrtmp.views import node_detail, nodes_table

app = typer.Typer(help="Inspect, drain and forget worker nodes.", no_args_is_help=True, rich_markup_mode=None)


@app.command("list")
@with_connection
def list_(conn: Connection, json_output: bool = typer.Option(False, "--json")) -> None:
    """List the nodes the master knows, with slots in use and resources."""
    with conn.client() as client:
        nodes = client.nodes()
    if json_output:
        print_json(nodes)
    else:
        console.print(nodes_table(nodes, console.width))


@app.command("show")
@with_connection
def show(conn: Connection, name: str = typer.Argument(...), json_output: bool = typer.Option(False, "--json")) -> None:
    """Show one node: resources, running jobs, encoders and why unusable ones are."""
    with conn.client() as client:
        node = client.node(name)
    if json_output:
        print_json(node)
    else:
        console.print(node_detail(node))


@app.command("drain")
@with_connection
def drain(conn: Connection, name: str = typer.Argument(...)) -> None:
    """Stop a node taking new jobs; it exits once its running jobs finish."""
    with conn.client() as client:
        result = client.drain(name)
    console.print(f"{result['name']} draining ({result['running']} running)", highlight=False)


@app.command("forget")
@with_connection
def forget(conn: Connection, name: str = typer.Argument(...)) -> None:
    """Drop an offline node from `nodes list` and the metrics now (the master does so itself after
    --forget-offline); its jobs keep its name. A connected node is refused (exit 2): drain it first."""
    with conn.client() as client:
        client.forget(name)
    console.print(f"{name} forgotten", highlight=False)
