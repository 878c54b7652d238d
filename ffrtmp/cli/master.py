"""`ffrtmp master`: run the coordinator."""

from __future__ import annotations

from pathlib import Path

import typer

from ffrtmp import defaults
from ffrtmp.cli.common import duration_option, setup_logging
from ffrtmp.errors import InvalidInput
from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.recovery import RetryPolicy


def master(
    bind: str = typer.Option(defaults.BIND_ADDRESS, "--bind", envvar="FFRTMP_BIND", help="Interface to listen on."),
    port: int = typer.Option(defaults.MASTER_PORT, "--port", envvar="FFRTMP_PORT",
                             help="ZeroMQ port (0: any free port; see master.json in the data dir)."),
    data_dir: Path = typer.Option(None, "--data-dir", envvar="FFRTMP_DATA_DIR", show_default=False,
                                  help="Database and key pair. Default: ~/.local/share/ffrtmp."),
    db: Path = typer.Option(None, "--db", help="SQLite database. Default: DATA_DIR/master.db."),
    tls: bool = typer.Option(True, "--tls/--no-tls", envvar="FFRTMP_TLS", help="CURVE encryption of all traffic."),
    cert: Path = typer.Option(None, "--cert", help="The master's public CURVE certificate (NAME.key)."),
    key: Path = typer.Option(None, "--key", help="The master's secret CURVE certificate (NAME.key_secret)."),
    allow_keys: Path = typer.Option(None, "--allow-keys", help="Admit only clients whose public certificates "
                                    "are in this directory."),
    api_key: str = typer.Option(None, "--api-key", envvar=["FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY"],
                                help="Require this API key on every request."),
    max_retries: int = typer.Option(defaults.MAX_RETRIES, "--max-retries", min=0, max=100,
                                    help="Retries of a failed attempt (per job: jobs submit --max-retries)."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Serve Prometheus metrics and /health."),
    metrics_port: int = typer.Option(defaults.METRICS_PORT, "--metrics-port", envvar="FFRTMP_METRICS_PORT"),
    scheduler_interval: str = typer.Option("5s", "--scheduler-interval", help="Period of the maintenance pass."),
    heartbeat_interval: str = typer.Option("1s", "--heartbeat-interval", help="Worker heartbeat period."),
    node_timeout: str = typer.Option("10s", "--node-timeout", help="Silence after which a worker is offline."),
    stall_timeout: str = typer.Option("10m", "--stall-timeout", help="No progress for this long = stalled."),
    log_retention: str = typer.Option("7d", "--log-retention", help="Keep job log lines this long."),
    retry_backoff: str = typer.Option("5s", "--retry-backoff", help="First retry delay (doubles per attempt)."),
    retry_backoff_max: str = typer.Option("5m", "--retry-backoff-max", help="Cap of the retry delay."),
    output_root: list[str] = typer.Option([], "--output-root",
                                          help="Absolute output paths under this root are accepted (repeatable)."),
    log_level: str = typer.Option("info", "--log-level", envvar="FFRTMP_LOG_LEVEL"),
) -> None:
    """Run the coordinator: ZeroMQ ROUTER + SQLite store + scheduler + metrics."""
    from ffrtmp.master.server import MasterOptions, MasterServer

    setup_logging(log_level)
    heartbeat = duration_option(heartbeat_interval, "heartbeat-interval") or defaults.HEARTBEAT_INTERVAL
    timeout = duration_option(node_timeout, "node-timeout") or defaults.NODE_TIMEOUT
    if timeout <= heartbeat:
        raise InvalidInput("node-timeout", f"must be longer than --heartbeat-interval ({heartbeat:g}s)")
    for root in output_root:
        if not root.startswith("/"):
            raise InvalidInput("output-root", f"{root!r} must be an absolute path")
    config = MasterConfig(
        api_key=api_key, max_retries=max_retries, heartbeat_interval=heartbeat, node_timeout=timeout,
        scheduler_interval=duration_option(scheduler_interval, "scheduler-interval") or defaults.SCHEDULER_INTERVAL,
        stall_timeout=duration_option(stall_timeout, "stall-timeout") or defaults.STALL_TIMEOUT,
        output_roots=tuple(root.rstrip("/") or "/" for root in output_root),
        retry=RetryPolicy(base=duration_option(retry_backoff, "retry-backoff") or 0.0,
                          cap=duration_option(retry_backoff_max, "retry-backoff-max") or 0.0),
    )
    duration_option(log_retention, "log-retention")
    options = MasterOptions(bind=bind, port=port, data_dir=data_dir or defaults.data_dir(), db=db, tls=tls,
                            cert=cert, key=key, allow_keys=allow_keys, metrics=metrics, metrics_port=metrics_port,
                            config=config)
    if key is None and cert is not None:
        raise InvalidInput("key", "--cert needs --key (the secret half)")
    if allow_keys is not None and not allow_keys.is_dir():
        raise InvalidInput("allow-keys", f"{allow_keys} is not a directory")
    server = MasterServer(options)
    server.install_signal_handlers()
    server.run()
