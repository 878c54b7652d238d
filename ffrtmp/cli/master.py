"""`ffrtmp master`: run the coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from ffrtmp import defaults
from ffrtmp.cli.common import (
    LogFormatOption,
    LogLevelOption,
    TracingEndpointOption,
    TracingOption,
    duration_option,
    setup_logging,
)
from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import QUEUE_WEIGHTS, check_name
from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.leadership import LeaseTimings
from ffrtmp.master.limits import JobLimits
from ffrtmp.master.logbook import LogPolicy
from ffrtmp.master.pricing import DEFAULT_CURRENCY, Pricing
from ffrtmp.master.ratelimit import parse_limits
from ffrtmp.master.recovery import RetryPolicy
from ffrtmp.masters import parse_address, parse_masters
from ffrtmp.units import duration_text, parse_duration, parse_size, size_text

if TYPE_CHECKING:
    from ffrtmp.master.server import MasterOptions


def parse_stall_timeouts(values: list[str]) -> tuple[float, dict[str, float]]:
    """`10m` sets the default; `live=30s` sets one queue's."""
    default, by_queue = defaults.STALL_TIMEOUT, {}
    for value in values:
        queue, sep, duration = value.rpartition("=")
        seconds = duration_option(duration, "stall-timeout") or 0.0
        if seconds <= 0:
            raise InvalidInput("stall-timeout", f"{value!r} must be a positive duration")
        if not sep:
            default = seconds
        elif queue in QUEUE_WEIGHTS:
            by_queue[queue] = seconds
        else:
            raise InvalidInput("stall-timeout", f"{queue!r} is not a queue ({', '.join(QUEUE_WEIGHTS)})")
    return default, by_queue


def cluster_options(options: MasterOptions, name: str | None, advertise: str | None, peers: str | None,
                    ttl: str, renew: str, poll: str) -> None:
    """Check and set the flags of SPEC §8 (the cluster's): a bad value is a one-line error naming the flag."""
    if name is not None:
        check_name("name", name)
        options.name = name
    if advertise is not None:
        options.advertise = parse_address(advertise, "advertise")
    if peers is not None:
        parse_masters(peers, "cluster-peers")  # accepted and checked: the database, not a peer list, decides
    options.lease = LeaseTimings(ttl=duration_option(ttl, "lease-ttl") or 0.0,
                                 renew_every=duration_option(renew, "lease-renew") or 0.0,
                                 poll_every=duration_option(poll, "standby-poll") or 0.0)


GO_TRUE = ("true", "1", "yes", "on", "t")
GO_FALSE = ("false", "0", "no", "off", "f")


def go_style_booleans(command: Any, args: list[str]) -> list[str]:
    """`--flag=true|false` (Go's flag package, as the seed's command lines write them) → `--flag`/`--no-flag`.

    Every boolean flag of `command` takes it, so `--tls=false --metrics=true` and later ones such as
    `--cluster-mode=true` work as written; `--flag=false` of a flag with no `--no-` form just leaves it out.
    """
    flags: dict[str, str | None] = {}
    for param in command.params:
        # Duck-typed: typer ships its own copy of click, so click's classes are not the ones used here.
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            for name in param.opts:
                flags[name] = param.secondary_opts[0] if param.secondary_opts else None
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        name, sep, value = arg.partition("=")
        if not sep or name not in flags:
            out.append(arg)
            continue
        if value.lower() in GO_TRUE:
            out.append(name)
        elif value.lower() in GO_FALSE:
            if (negative := flags[name]) is not None:
                out.append(negative)
        else:
            raise InvalidInput(name.lstrip("-"), f"{value!r} is not true or false")
    return out


class GoStyleCommand(TyperCommand):
    """A command whose boolean flags also take Go-style values (`--tls=false`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, go_style_booleans(self, args))


def master(
    bind: str = typer.Option(defaults.BIND_ADDRESS, "--bind", envvar="FFRTMP_BIND",
                             help="Interface to listen on (ZeroMQ and metrics). auto: 127.0.0.1 while the master "
                                  "has no API key and no --allow-keys (protected mode), else 0.0.0.0."),
    port: int = typer.Option(defaults.MASTER_PORT, "--port", envvar="FFRTMP_PORT",
                             help="ZeroMQ port (0: any free port; see master.json in the data dir)."),
    data_dir: Path = typer.Option(None, "--data-dir", envvar="FFRTMP_DATA_DIR", show_default=False,
                                  help="Database and key pair. Default: ~/.local/share/ffrtmp."),
    db: str = typer.Option(None, "--db", help="The store: an SQLite file or a postgresql:// URL "
                           "(default DATA_DIR/master.db; a URL: postgresql://USER@HOST:PORT/DBNAME)."),
    tls: bool = typer.Option(True, "--tls/--no-tls", envvar="FFRTMP_TLS", help="CURVE encryption of all traffic."),
    cert: Path = typer.Option(None, "--cert", help="The master's public CURVE certificate (NAME.key)."),
    key: Path = typer.Option(None, "--key", help="The master's secret CURVE certificate (NAME.key_secret)."),
    allow_keys: Path = typer.Option(None, "--allow-keys", help="Admit only clients whose public certificates "
                                    "are in this directory."),
    api_key: str = typer.Option(None, "--api-key", envvar=["FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY"],
                                help="Require this API key on every request."),
    max_retries: int = typer.Option(defaults.MAX_RETRIES, "--max-retries", min=0, max=100, envvar="FFRTMP_MAX_RETRIES",
                                    help="Retries of a failed attempt (per job: jobs submit --max-retries)."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Serve Prometheus metrics and /health."),
    metrics_port: int = typer.Option(defaults.METRICS_PORT, "--metrics-port", envvar="FFRTMP_METRICS_PORT"),
    api_port: int = typer.Option(defaults.API_PORT, "--api-port", min=0, max=65535, envvar="FFRTMP_API_PORT",
                                 help="HTTPS JSON API port (GET /api/jobs, ...); 0 turns the HTTP API off."),
    files_port: int = typer.Option(None, "--files-port", min=0, max=65535, envvar="FFRTMP_FILES_PORT",
                                   show_default=str(defaults.FILES_PORT),
                                   help="The data channel for job files (uploads, fetches; CURVE like --port); 0 "
                                        "turns it off."),
    files: str = typer.Option(None, "--files", envvar="FFRTMP_FILES", show_default=False,
                              help="Where stored files live (content-addressed): a directory (shared by several "
                                   "masters) or s3://BUCKET/PREFIX (extra ffrtmp[s3]). Default: DATA_DIR/files."),
    files_retention: str = typer.Option(defaults.FILES_RETENTION, "--files-retention", envvar="FFRTMP_FILES_RETENTION",
                                        help="Remove a stored file no job keeps this long after its last use."),
    files_max_bytes: str = typer.Option(None, "--files-max-bytes", envvar="FFRTMP_FILES_MAX_BYTES",
                                        show_default=False, help="Cap of the whole file store (e.g. 500G); an upload "
                                        "past it is refused at its start (exit 5). Default: no cap."),
    api_bind: str = typer.Option(defaults.API_BIND, "--api-bind", envvar="FFRTMP_API_BIND",
                                 help="Interface of the HTTP API. auto: 127.0.0.1 while the master has no API key "
                                      "(protected mode; --allow-keys does not count), else 0.0.0.0."),
    api_tls: bool = typer.Option(defaults.API_TLS, "--api-tls/--no-api-tls", envvar="FFRTMP_API_TLS",
                                 help="HTTPS for the HTTP API. --no-api-tls: plain HTTP, on a loopback address only "
                                      "(127.0.0.1), for a TLS-terminating proxy in front of the master."),
    tls_cert: Path = typer.Option(None, "--tls-cert", envvar="FFRTMP_TLS_CERT", show_default=False,
                                  help="The HTTP API's certificate (PEM). Default: a self-signed one made in the "
                                       "data dir (api-cert.pem) on first start; its fingerprint is logged."),
    tls_key: Path = typer.Option(None, "--tls-key", envvar="FFRTMP_TLS_KEY", show_default=False,
                                 help="The HTTP API's private key (PEM), with --tls-cert."),
    scheduler_interval: str = typer.Option(duration_text(defaults.SCHEDULER_INTERVAL), "--scheduler-interval",
                                           envvar="FFRTMP_SCHEDULER_INTERVAL", help="Period of the maintenance pass."),
    heartbeat_interval: str = typer.Option(duration_text(defaults.HEARTBEAT_INTERVAL), "--heartbeat-interval",
                                           envvar="FFRTMP_HEARTBEAT_INTERVAL", help="Worker heartbeat period."),
    node_timeout: str = typer.Option(duration_text(defaults.NODE_TIMEOUT), "--node-timeout",
                                     envvar="FFRTMP_NODE_TIMEOUT", help="Silence after which a worker is offline."),
    stall_timeout: list[str] = typer.Option([duration_text(defaults.STALL_TIMEOUT)], "--stall-timeout",
                                            envvar="FFRTMP_STALL_TIMEOUT",
                                            help="No progress for this long = stalled; QUEUE=DURATION sets one "
                                                 "queue's (repeatable, e.g. --stall-timeout live=30s)."),
    max_wait: str = typer.Option(None, "--max-wait", help="Aging: a job pending longer than this is dispatched "
                                 "before newer, heavier ones (off by default)."),
    forget_offline: str = typer.Option(duration_text(defaults.FORGET_OFFLINE), "--forget-offline",
                                       envvar="FFRTMP_FORGET_OFFLINE", help="Forget a node offline this long (it "
                                       "leaves `nodes list` and the metrics; its jobs keep its name); 0: never."),
    log_retention: str = typer.Option(duration_text(defaults.LOG_RETENTION), "--log-retention",
                                      envvar="FFRTMP_LOG_RETENTION",
                                      help="Delete a job's log this long after it ends."),
    log_max_job: str = typer.Option(size_text(defaults.LOG_MAX_JOB_BYTES), "--log-max-job",
                                    envvar="FFRTMP_LOG_MAX_JOB_BYTES", help="Cut a job's stored log past this size."),
    log_max_total: str = typer.Option(size_text(defaults.LOG_MAX_TOTAL_BYTES), "--log-max-total",
                                      envvar="FFRTMP_LOG_MAX_TOTAL_BYTES",
                                      help="Past this much stored log, delete the oldest finished jobs' logs."),
    retry_backoff: str = typer.Option(duration_text(defaults.RETRY_BACKOFF_BASE), "--retry-backoff",
                                      envvar="FFRTMP_RETRY_BACKOFF", help="First retry delay (doubles per attempt)."),
    retry_backoff_max: str = typer.Option(duration_text(defaults.RETRY_BACKOFF_MAX), "--retry-backoff-max",
                                          envvar="FFRTMP_RETRY_BACKOFF_MAX", help="Cap of the retry delay."),
    output_root: list[str] = typer.Option([], "--output-root",
                                          help="Absolute output paths under this root are accepted (repeatable)."),
    rate_limit: list[str] = typer.Option([], "--rate-limit", help="KIND=RATE[/BURST] per key: submit, read, logs "
                                         "or node (worker messages); 0 = unlimited (repeatable)."),
    max_resolution: str = typer.Option(defaults.MAX_RESOLUTION, "--max-resolution", envvar="FFRTMP_MAX_RESOLUTION",
                                       help="The largest frame a job may ask for (either orientation)."),
    max_fps: int = typer.Option(defaults.MAX_FPS, "--max-fps", envvar="FFRTMP_MAX_FPS",
                                help="The highest frame rate a job may ask for."),
    max_duration: str = typer.Option(defaults.MAX_JOB_DURATION, "--max-duration", envvar="FFRTMP_MAX_DURATION",
                                     help="The longest duration a job may ask for (at most 1d)."),
    max_bitrate: str = typer.Option(defaults.MAX_BITRATE, "--max-bitrate", envvar="FFRTMP_MAX_BITRATE",
                                    help="The highest bitrate a job may ask for."),
    insecure: bool = typer.Option(False, "--insecure", envvar="FFRTMP_INSECURE",
                                  help="Listen on a non-loopback --bind with no API key and no --allow-keys: "
                                       "anyone who reaches it is an admin."),
    store_min_free: str = typer.Option(size_text(defaults.STORE_MIN_FREE), "--store-min-free",
                                       envvar="FFRTMP_STORE_MIN_FREE", help="Free space kept on the store's disk: "
                                       "below it the master refuses writes (exit 5 'store full') and will not start."),
    submit_key_ttl: str = typer.Option(duration_text(defaults.SUBMIT_KEY_TTL), "--submit-key-ttl",
                                       envvar="FFRTMP_SUBMIT_KEY_TTL", help="How long a submit's idempotency key is "
                                       "remembered (a rerun of `jobs submit --from` within it creates nothing twice)."),
    max_followers: int = typer.Option(defaults.LOG_MAX_FOLLOWERS, "--max-followers", min=1,
                                      envvar="FFRTMP_MAX_FOLLOWERS",
                                      help="Log followers and waits served at once, all keys together."),
    max_followers_per_key: int = typer.Option(defaults.LOG_MAX_FOLLOWERS_PER_KEY, "--max-followers-per-key", min=1,
                                              envvar="FFRTMP_MAX_FOLLOWERS_PER_KEY",
                                              help="Log followers and waits one API key may hold open."),
    name: str = typer.Option(None, "--name", "--node-id", show_default=False,
                             help="This master's name in its cluster (default: the hostname); --node-id is the "
                                  "seed's spelling."),
    advertise: str = typer.Option(None, "--advertise", show_default=False,
                                  help="tcp://HOST:PORT workers and clients should use for this master (default: "
                                       "from --bind and --port; on 0.0.0.0 the host's name)."),
    cluster_mode: bool = typer.Option(False, "--cluster-mode", help="Accepted for the seed's scripts: every "
                                      "master is in a cluster; masters on one --db elect one leader."),
    cluster_peers: str = typer.Option(None, "--cluster-peers", show_default=False,
                                      help="Accepted for the seed's scripts (a:8080,b:8080) and checked; masters "
                                           "find each other through their shared database."),
    lease_ttl: str = typer.Option(duration_text(defaults.LEASE_TTL), "--lease-ttl", envvar="FFRTMP_LEASE_TTL",
                                  help="How long the leader's lease lasts unrenewed (a killed leader is replaced "
                                       "about this long after)."),
    lease_renew: str = typer.Option(duration_text(defaults.LEASE_RENEW), "--lease-renew",
                                    envvar="FFRTMP_LEASE_RENEW", help="How often the leader renews its lease."),
    standby_poll: str = typer.Option(duration_text(defaults.STANDBY_POLL), "--standby-poll",
                                     envvar="FFRTMP_STANDBY_POLL",
                                     help="How often a standby master looks whether the lease is free."),
    energy_price: str = typer.Option(None, "--energy-price", envvar="FFRTMP_ENERGY_PRICE", show_default=False,
                                     help="Price of a kWh: a completed job's cost counts its energy_joules."),
    cpu_hour_price: str = typer.Option(None, "--cpu-hour-price", envvar="FFRTMP_CPU_HOUR_PRICE", show_default=False,
                                       help="Price of a CPU-hour: a completed job's cost counts its cpu_seconds."),
    currency: str = typer.Option(DEFAULT_CURRENCY, "--currency", envvar="FFRTMP_CURRENCY",
                                 help="Currency code of both prices (a job's `currency`)."),
    tracing: TracingOption = False,
    tracing_endpoint: TracingEndpointOption = None,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run the coordinator: ZeroMQ ROUTER + SQLite store + scheduler + metrics. A file store in a bucket
    (`--files s3://BUCKET/PREFIX`, extra ffrtmp[s3]) is reached at FFRTMP_S3_ENDPOINT, else per boto3's AWS_*."""
    from ffrtmp.master.server import MasterOptions, MasterServer

    setup_logging(log_level, log_format)
    heartbeat = duration_option(heartbeat_interval, "heartbeat-interval") or defaults.HEARTBEAT_INTERVAL
    timeout = duration_option(node_timeout, "node-timeout") or defaults.NODE_TIMEOUT
    if timeout <= heartbeat:
        raise InvalidInput("node-timeout", f"must be longer than --heartbeat-interval ({heartbeat:g}s)")
    for root in output_root:
        if not root.startswith("/"):
            raise InvalidInput("output-root", f"{root!r} must be an absolute path")
    stall_default, stall_by_queue = parse_stall_timeouts(stall_timeout)
    config = MasterConfig(
        api_key=api_key, max_retries=max_retries, heartbeat_interval=heartbeat, node_timeout=timeout,
        scheduler_interval=duration_option(scheduler_interval, "scheduler-interval") or defaults.SCHEDULER_INTERVAL,
        stall_timeout=stall_default, stall_timeouts=stall_by_queue,
        max_wait=duration_option(max_wait, "max-wait"),
        forget_offline=duration_option(forget_offline, "forget-offline") or None,
        output_roots=tuple(root.rstrip("/") or "/" for root in output_root),
        rate_limits=parse_limits(rate_limit),
        limits=JobLimits.parse(max_resolution, max_fps, duration_option(max_duration, "max-duration") or 0.0,
                               max_bitrate),
        retry=RetryPolicy(base=duration_option(retry_backoff, "retry-backoff") or 0.0,
                          cap=duration_option(retry_backoff_max, "retry-backoff-max") or 0.0),
    )
    config.store_min_free = parse_size(store_min_free, field="store-min-free")
    config.pricing = Pricing.parse(energy_price, cpu_hour_price, currency)
    config.submit_key_ttl = duration_option(submit_key_ttl, "submit-key-ttl") or defaults.SUBMIT_KEY_TTL
    config.logs = LogPolicy(retention=duration_option(log_retention, "log-retention") or defaults.LOG_RETENTION,
                            max_job_bytes=parse_size(log_max_job, field="log-max-job"),
                            max_total_bytes=parse_size(log_max_total, field="log-max-total"),
                            max_followers=max_followers, max_followers_per_key=max_followers_per_key)
    options = MasterOptions(bind=bind, port=port, data_dir=data_dir or defaults.data_dir(), db=db, tls=tls,
                            cert=cert, key=key, allow_keys=allow_keys, metrics=metrics, metrics_port=metrics_port,
                            config=config, insecure=insecure, api_port=api_port, api_bind=api_bind, api_tls=api_tls,
                            tls_cert=tls_cert, tls_key=tls_key,
                            files_port=defaults.FILES_PORT if files_port is None else files_port,
                            files_port_given=files_port is not None, files_dir=files,
                            files_retention=duration_option(files_retention, "files-retention")
                            or parse_duration(defaults.FILES_RETENTION),
                            files_max_bytes=parse_size(files_max_bytes, field="files-max-bytes")
                            if files_max_bytes else None)
    cluster_options(options, name, advertise, cluster_peers, lease_ttl, lease_renew, standby_poll)
    if key is None and cert is not None:
        raise InvalidInput("key", "--cert needs --key (the secret half)")
    if allow_keys is not None and not allow_keys.is_dir():
        raise InvalidInput("allow-keys", f"{allow_keys} is not a directory")
    if tracing:
        from ffrtmp.tracing import Tracing

        options.tracing = Tracing("ffrtmp-master", endpoint=tracing_endpoint)
    server = MasterServer(options)
    server.install_signal_handlers()
    server.run()
