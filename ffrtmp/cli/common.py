"""What every command shares: the connection options (README "Commands"), output helpers, logging set-up."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, overload

import typer
from rich.console import Console

from ffrtmp import defaults
from ffrtmp.client import Client
from ffrtmp.logsetup import setup_logging
from ffrtmp.units import parse_duration

console = Console()
errors = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


TracingOption = Annotated[bool, typer.Option(
    "--tracing/--no-tracing", envvar="FFRTMP_TRACING",
    help="Export OpenTelemetry traces (needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http).")]
TracingEndpointOption = Annotated[str | None, typer.Option(
    "--tracing-endpoint", envvar="FFRTMP_TRACING_ENDPOINT", help="OTLP/HTTP endpoint (default localhost:4318).")]
LogLevelOption = Annotated[str, typer.Option("--log-level", envvar="FFRTMP_LOG_LEVEL",
                                             help="debug, info, warning, error")]
LogFormatOption = Annotated[str, typer.Option("--log-format", envvar="FFRTMP_LOG_FORMAT", help="text or json (lines)")]
"""Options the master and the worker share."""


@dataclass
class Connection:
    """How to reach the master, from the options every client command and `worker` take."""

    master: str
    api_key: str | None
    master_key: str | None
    timeout: float
    client_key: Path | None
    tls: bool

    def client(self) -> Client:
        return Client(self.master, api_key=self.api_key, master_key=self.master_key, client_key=self.client_key,
                      timeout=self.timeout, tls=self.tls)


_CONNECTION_OPTIONS: dict[str, tuple[Any, Any]] = {
    "master": (Annotated[str, typer.Option("--master", envvar="FFRTMP_MASTER",
                                           help="The master's address, or several, comma-separated: the leader "
                                                "is found and followed.",
                                           rich_help_panel="Connection")], defaults.MASTER_URL),
    "api_key": (Annotated[str | None, typer.Option(
        "--api-key", envvar=["FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY"],
        help="API key, when the master requires one.", rich_help_panel="Connection", show_envvar=True)], None),
    "master_key": (Annotated[str | None, typer.Option(
        "--master-key", envvar="FFRTMP_MASTER_KEY", rich_help_panel="Connection",
        help="The master's public CURVE key: Z85 text or a master.key file. Default: the key a master on this "
             "machine wrote to its data dir.")], None),
    "timeout": (Annotated[float, typer.Option("--timeout", envvar="FFRTMP_TIMEOUT", rich_help_panel="Connection",
                                              help="Seconds to wait for the master before giving up (exit 3).")],
                defaults.CLIENT_TIMEOUT),
    "client_key": (Annotated[Path | None, typer.Option(
        "--client-key", envvar="FFRTMP_CLIENT_KEY", rich_help_panel="Connection",
        help="This client's secret CURVE certificate. Default: your own pair, made once in the config dir.")],
        None),
    "tls": (Annotated[bool, typer.Option("--tls/--no-tls", envvar="FFRTMP_TLS", rich_help_panel="Connection",
                                         help="CURVE encryption (must match the master).")], True),
}


@overload
def with_connection(func: F, *, timeout_flag: str = "--timeout") -> F: ...


@overload
def with_connection(func: None = None, *, timeout_flag: str = "--timeout") -> Callable[[F], F]: ...


def with_connection(func: F | None = None, *, timeout_flag: str = "--timeout") -> Any:
    """Add the connection options to a command; it receives them as `conn: Connection`.

    `timeout_flag` renames the connection timeout where the command's own `--timeout` means something else
    (`jobs submit --timeout` is the job's deadline).
    """
    if func is None:
        return lambda f: with_connection(f, timeout_flag=timeout_flag)
    signature = inspect.signature(func)
    hints = typer_hints(func)
    # Typer reads a __signature__ as is: its annotations must be the evaluated ones, or an Annotated option
    # (TracingOption, LogLevelOption) would lose its envvar and help.
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
              if p.name != "conn"]
    for name, (annotation, default) in _CONNECTION_OPTIONS.items():
        if name == "timeout" and timeout_flag != "--timeout":
            annotation = Annotated[float, typer.Option(timeout_flag, envvar="FFRTMP_TIMEOUT",
                                                       rich_help_panel="Connection",
                                                       help="Seconds to wait for the master (exit 3).")]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
        hints[name] = annotation
    hints.pop("conn", None)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        conn = Connection(**{name: kwargs.pop(name) for name in _CONNECTION_OPTIONS})
        return func(*args, conn=conn, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = hints
    del wrapper.__wrapped__  # typer must see the new signature, not the original's
    return wrapper


def typer_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return dict(typing.get_type_hints(func, include_extras=True))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


__all__ = ["Connection", "LogFormatOption", "LogLevelOption", "TracingEndpointOption", "TracingOption", "console",
           "errors", "print_json", "duration_option", "setup_logging", "with_connection"]


def duration_option(value: str | None, field: str) -> float | None:
    return None if value is None else parse_duration(value, field=field)
