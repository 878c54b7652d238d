"""The root of the `ffrtmp` command and the one place errors become exit codes (README "Exit codes")."""

from __future__ import annotations

import sys

import typer
from rich import box
from rich.text import Text

from ffrtmp import __version__, defaults
from ffrtmp.cli import cluster, demo, jobs, keys, master, nodes, recommend, report, top, worker
from ffrtmp.cli.common import console, errors
from ffrtmp.cli.settings import ENVIRONMENT_ONLY, environment_epilog
from ffrtmp.errors import FfrtmpError, InvalidInput

app = typer.Typer(
    name="ffrtmp",
    help="A distributed FFmpeg/GStreamer job system: master, workers and clients over CURVE-encrypted ZeroMQ.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "KIND=RATE[/BURST]" must not read as markup
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("master", cls=master.GoStyleCommand,
            epilog=environment_epilog("FFRTMP_MAX_MESSAGE_BYTES", "FFRTMP_PREAUTH_RATE"))(master.master)
WORKER_ENVIRONMENT = [name for name in ENVIRONMENT_ONLY if name != "FFRTMP_PREAUTH_RATE"]
app.command("worker", cls=master.GoStyleCommand, epilog=environment_epilog(*WORKER_ENVIRONMENT))(worker.worker)
app.command("demo")(demo.demo)
app.command("top")(top.top)
app.command("recommend")(recommend.recommend)
app.command("report")(report.report)
app.add_typer(jobs.app, name="jobs")
app.add_typer(nodes.app, name="nodes")
app.add_typer(keys.app, name="keys")
app.add_typer(cluster.app, name="cluster")


@app.command("scenarios")
def scenarios(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the scenario presets that `jobs submit --scenario` fills defaults from."""
    from rich.table import Table

    from ffrtmp.cli.common import print_json
    from ffrtmp.scenarios import SCENARIOS

    if json_output:
        print_json([vars(s) for s in SCENARIOS.values()])
        return
    table = Table(header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("SCENARIO", "RESOLUTION", "FPS", "DURATION", "CODEC", "BITRATE", "WHAT"):
        table.add_column(column)
    for s in SCENARIOS.values():
        table.add_row(s.name, s.resolution, str(s.fps), f"{s.duration:g}s", s.codec, s.bitrate, s.description)
    console.print(table)
    console.print("Any other --scenario name is a label; the plain defaults are 1280x720, 30 fps, 10 s, h264, 2000k.")


def _version(value: bool) -> None:
    if value:
        console.print(f"ffrtmp {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """ffrtmp: run `ffrtmp demo` to see it work, `ffrtmp COMMAND --help` for details."""


def main() -> None:
    try:
        if defaults.ENV_ERRORS:  # read at import, reported here: a clear exit 2, no traceback
            name, problem = next(iter(defaults.ENV_ERRORS.items()))
            raise InvalidInput(name, problem)
        app()
    except FfrtmpError as exc:
        errors.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
