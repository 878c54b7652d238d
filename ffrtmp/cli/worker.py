"""`ffrtmp worker`: run a worker, or `--probe` what this machine can do."""

from __future__ import annotations

import hashlib
import signal
import socket
from pathlib import Path
from types import FrameType

import typer
from rich.markup import escape

from ffrtmp import defaults
from ffrtmp.cli.common import (
    Connection,
    LogFormatOption,
    LogLevelOption,
    TracingEndpointOption,
    TracingOption,
    console,
    print_json,
    setup_logging,
    with_connection,
)
from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import check_name, parse_labels
from ffrtmp.masters import parse_masters
from ffrtmp.units import duration_text, parse_duration, parse_size, size_text


def machine_fingerprint(name: str) -> str:
    """Stable per machine and worker name: /etc/machine-id when there is one, else the hostname."""
    machine = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine = Path(path).read_text().strip()
            break
        except OSError:
            continue
    return hashlib.sha256(f"{machine or socket.gethostname()}:{name}".encode()).hexdigest()[:16]


@with_connection
def worker(
    conn: Connection,
    name: str = typer.Option(None, "--name", envvar="FFRTMP_WORKER_NAME", help="Node name. Default: hostname."),
    slots: int = typer.Option(defaults.WORKER_SLOTS, "--slots", min=1, max=256, envvar="FFRTMP_SLOTS",
                              help="Concurrent jobs."),
    engines: str = typer.Option(None, "--engines", help="Comma list of engines to offer (default: all found)."),
    work_dir: Path = typer.Option(None, "--work-dir", envvar="FFRTMP_WORK_DIR",
                                  help="Scratch dir for inputs and outputs. Default: ~/.cache/ffrtmp/work."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE this node offers (repeatable)."),
    output_root: list[Path] = typer.Option([], "--output-root", help="Also allow absolute outputs under this dir."),
    metrics_port: int = typer.Option(defaults.WORKER_METRICS_PORT, "--metrics-port",
                                     envvar="FFRTMP_WORKER_METRICS_PORT", help="Prometheus port (0: off)."),
    burst: bool = typer.Option(False, "--burst", help="Exit 0 when no work is left."),
    probe: bool = typer.Option(False, "--probe", help="Print engines, encoders and resources, then exit."),
    json_output: bool = typer.Option(False, "--json", help="With --probe: print JSON."),
    ffmpeg: str = typer.Option(None, "--ffmpeg", envvar="FFRTMP_FFMPEG", help="The ffmpeg binary to use."),
    drain_timeout: float = typer.Option(defaults.DRAIN_TIMEOUT, "--drain-timeout", envvar="FFRTMP_DRAIN_TIMEOUT",
                                        help="Seconds running jobs get to finish on "
                                        "SIGTERM or `nodes drain` before they are stopped."),
    metrics_bind: str = typer.Option(defaults.WORKER_METRICS_BIND, "--metrics-bind",
                                     envvar="FFRTMP_WORKER_METRICS_BIND",
                                     help="Interface of the Prometheus endpoint (unauthenticated; 0.0.0.0: all)."),
    output_retention: str = typer.Option(duration_text(defaults.OUTPUT_RETENTION), "--output-retention",
                                         envvar="FFRTMP_OUTPUT_RETENTION",
                                         help="Delete outputs in the work dir older than this (0: never)."),
    deliver_timeout: float = typer.Option(defaults.DELIVER_TIMEOUT, "--deliver-timeout",
                                          envvar="FFRTMP_DELIVER_TIMEOUT", help="When stopping: seconds results "
                                          "get to reach the master once nothing runs; then the worker exits anyway, "
                                          "keeping them in the work dir for its next start."),
    input_root: list[Path] = typer.Option([], "--input-root", envvar="FFRTMP_INPUT_ROOT",
                                          help="Jobs may read local input files under this dir (repeatable; "
                                          "env: dirs separated by ':'). Default: none."),
    path_map: list[str] = typer.Option(list(defaults.PATH_MAP), "--path-map", metavar="FROM=TO",
                                       help="Jobs naming a shared-storage input under FROM read it under TO here "
                                       "(repeatable; TO must be under an --input-root; env FFRTMP_PATH_MAP: pairs "
                                       "separated by ':'). The master gives such jobs only to workers that see them."),
    allow_private_network: bool = typer.Option(defaults.ALLOW_PRIVATE_NETWORK, "--allow-private-network",
                                               envvar="FFRTMP_ALLOW_PRIVATE_NETWORK",
                                               help="Let URL inputs and RTMP outputs reach loopback, private "
                                               "and link-local addresses."),
    prefetch: int = typer.Option(defaults.PREFETCH, "--prefetch", min=0, max=256, envvar="FFRTMP_PREFETCH",
                                 help="Jobs held beyond the free slots, so the next starts the moment one ends "
                                 "(0: off)."),
    cache_max_bytes: str = typer.Option(size_text(defaults.CACHE_MAX_BYTES), "--cache-max-bytes",
                                        envvar="FFRTMP_CACHE_MAX_BYTES", help="Room for inputs fetched from the "
                                        "master's file store (WORK_DIR/cache); past it the least recently used "
                                        "go."),
    watts_per_core: float = typer.Option(defaults.WATTS_PER_CORE, "--watts-per-core", min=0.0,
                                         envvar="FFRTMP_WATTS_PER_CORE", help="Watts one busy CPU core draws: "
                                         "job energy is CPU-seconds × this where RAPL cannot be read "
                                         "(energy_source estimated)."),
    quality_inline: bool = typer.Option(defaults.QUALITY_INLINE, "--quality-inline/--no-quality-inline",
                                        envvar="FFRTMP_QUALITY_INLINE", help="Measure a job's quality inside its "
                                        "FFmpeg encode where FFmpeg can (7.1+: the source is decoded once); off: "
                                        "in a second FFmpeg after the encode."),
    tracing: TracingOption = False,
    tracing_endpoint: TracingEndpointOption = None,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run a worker: join the master (with several, comma-separated: the leader), run FFmpeg jobs, heartbeat,
    stream logs."""
    from ffrtmp.worker.capabilities import KNOWN_ENGINES, detect

    masters = ",".join(parse_masters(conn.master))  # a bad address stops here, naming --master

    wanted = None
    if engines:
        wanted = [e.strip() for e in engines.split(",") if e.strip()]
        unknown = [e for e in wanted if e not in KNOWN_ENGINES]
        if unknown:
            raise InvalidInput("engines", f"{unknown[0]!r} is not one of {', '.join(KNOWN_ENGINES)}")
    retention = parse_duration(output_retention, field="output-retention")
    cache_bytes = parse_size(cache_max_bytes, field="cache-max-bytes")
    directory = (work_dir or defaults.work_dir()).expanduser()
    if probe:
        _probe(detect(wanted, ffmpeg), directory, json_output)
        return
    setup_logging(log_level, log_format)
    from ffrtmp.client import resolve_master_key
    from ffrtmp.security import client_keypair
    from ffrtmp.worker.agent import Agent, WorkerOptions
    from ffrtmp.worker.pathmap import check_announced, parse_path_maps, visible_prefixes

    node_name = check_name("name", name or socket.gethostname())
    labels = parse_labels(label)
    roots = tuple(p.expanduser().resolve() for p in input_root)
    maps = parse_path_maps(path_map, roots)
    sees = check_announced(visible_prefixes([p.expanduser() for p in input_root], maps))
    directory.mkdir(parents=True, exist_ok=True)
    master_key = resolve_master_key(conn.master_key, conn.tls)
    keys = client_keypair(conn.client_key) if conn.tls else None
    capabilities = detect(wanted, ffmpeg)
    for engine, reason in capabilities.missing.items():
        console.print(f"[yellow]engine {engine} unavailable:[/] {escape(reason)}", highlight=False)
    for root in input_root:
        if not root.expanduser().is_dir():
            console.print(f"[yellow]input root {escape(str(root))} is not a directory:[/] jobs can read nothing there",
                          highlight=False)
    if capabilities.ffmpeg:
        console.print(f"ffmpeg: {capabilities.ffmpeg} ({capabilities.ffmpeg_source})", highlight=False, markup=False)
    for mapping in maps:
        console.print(f"path map: inputs under {mapping.source} are read under {mapping.target}", highlight=False,
                      markup=False)
    options = WorkerOptions(master=masters, master_key=master_key, client_keys=keys, api_key=conn.api_key,
                            name=node_name, fingerprint=machine_fingerprint(node_name), slots=slots,
                            work_dir=directory, labels=labels, output_roots=tuple(p.resolve() for p in output_root),
                            burst=burst, drain_timeout=drain_timeout, output_retention=retention,
                            deliver_timeout=deliver_timeout,
                            input_roots=roots, path_maps=maps, sees=sees,
                            allow_private_network=allow_private_network, prefetch=prefetch,
                            cache_max_bytes=cache_bytes, watts_per_core=watts_per_core,
                            quality_inline=quality_inline)
    if tracing:
        from ffrtmp.tracing import Tracing

        options.tracing = Tracing("ffrtmp-worker", endpoint=tracing_endpoint)
    agent = Agent(options, capabilities)
    if metrics_port:
        from ffrtmp.worker.metrics import serve_worker_metrics

        serve_worker_metrics(agent, metrics_port, metrics_bind)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.request_stop()  # the first drains, a second stops at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = agent.run()
    if options.tracing is not None:
        options.tracing.shutdown()  # flushes the spans still buffered
    raise typer.Exit(code)


def _probe(capabilities: object, work_dir: Path, json_output: bool) -> None:
    from ffrtmp.views import encoders_table
    from ffrtmp.worker.capabilities import Capabilities
    from ffrtmp.worker.resources import ResourceSampler
    from ffrtmp.worker.tools import BUNDLED, ffmpeg_version

    assert isinstance(capabilities, Capabilities)
    work_dir.mkdir(parents=True, exist_ok=True)
    resources = ResourceSampler(work_dir).sample()
    # Every encoder found, also those of an engine this worker cannot offer: their reasons say why.
    encoders = {e.name: e.to_dict() for e in capabilities.encoders}
    version = ffmpeg_version(capabilities.ffmpeg) if capabilities.ffmpeg else None
    bundled = capabilities.ffmpeg_source == BUNDLED
    report = {"engines": capabilities.engines, "unavailable_engines": capabilities.missing,
              "ffmpeg": capabilities.ffmpeg, "ffmpeg_version": version, "ffmpeg_found_by": capabilities.ffmpeg_source,
              "ffmpeg_bundled": bundled, "gstreamer": capabilities.gstreamer,
              "encoders": list(encoders.values()), "quality_metrics": list(capabilities.quality),
              "resources": resources}
    if json_output:
        print_json(report)
        return
    console.print(f"[bold]engines:[/] {', '.join(capabilities.engines)}")
    for engine, reason in capabilities.missing.items():
        console.print(f"[yellow]unavailable:[/] {engine}: {escape(reason)}", highlight=False)
    if capabilities.ffmpeg:
        console.print(f"[bold]ffmpeg:[/] {escape(capabilities.ffmpeg)} (version {version or 'unknown'}, "
                      f"{'bundled' if bundled else 'system'}, found by {capabilities.ffmpeg_source})", highlight=False)
    else:
        console.print("[bold]ffmpeg:[/] not found", highlight=False)
    console.print(f"[bold]gstreamer:[/] {escape(capabilities.gstreamer or 'not usable')}", highlight=False)
    console.print(encoders_table(encoders))
    console.print(f"[bold]quality metrics:[/] {', '.join(capabilities.quality) or 'none (no FFmpeg)'}"
                  + ("" if "vmaf" in capabilities.quality else " (no libvmaf: --quality vmaf jobs go elsewhere)"),
                  highlight=False)
    gpus = ", ".join(g["name"] for g in resources["gpus"]) or "none found (no nvidia-smi)"
    console.print(f"[bold]resources:[/] {resources['cpu_count']} CPUs, load {resources['load1']}, "
                  f"memory {resources['memory_percent']}% used, disk free {resources['disk_free'] / 2**30:.1f} GiB "
                  f"in {escape(str(work_dir))}, GPUs: {escape(gpus)}", highlight=False)
