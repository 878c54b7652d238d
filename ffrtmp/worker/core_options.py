"""What a worker is told at start (`WorkerOptions`) and how its loop ends (`WorkerExit`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffrtmp import defaults
from ffrtmp.security import KeyPair
from ffrtmp.worker.pathmap import PathMap


@dataclass
class WorkerOptions:
    master: str = defaults.MASTER_URL
    master_key: bytes | None = None
    """The master's public key (CURVE), or None to connect without CURVE."""
    client_keys: KeyPair | None = None
    api_key: str | None = None
    name: str = "worker"
    fingerprint: str = ""
    slots: int = 1
    work_dir: Path = field(default_factory=defaults.work_dir)
    labels: dict[str, str] = field(default_factory=dict)
    output_roots: tuple[Path, ...] = ()
    burst: bool = False
    drain_timeout: float = 60.0
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    node_timeout: float = defaults.NODE_TIMEOUT
    deliver_timeout: float = defaults.DELIVER_TIMEOUT
    """When stopping, how long unacknowledged results are offered to the master once nothing runs."""
    prefetch: int = defaults.PREFETCH
    """Jobs held beyond the free slots (not started), so the next starts the moment a slot frees."""
    output_retention: float = defaults.OUTPUT_RETENTION
    """Outputs in the work dir older than this are deleted (0: never); stray partials always are."""
    tracing: Any = None
    """A `ffrtmp.tracing.Tracing`, or None: each attempt's run becomes a span in its job's trace."""
    input_roots: tuple[Path, ...] = ()
    """Local inputs are read only under these dirs (none: no local inputs)."""
    allow_private_network: bool = False
    """URL inputs and RTMP outputs may reach loopback, private and link-local addresses."""
    cache_max_bytes: int = defaults.CACHE_MAX_BYTES
    """Fetched inputs kept in `WORK_DIR/cache` (least recently used out first past this)."""
    path_maps: tuple[PathMap, ...] = ()
    """`--path-map FROM=TO`: shared-storage inputs named under FROM are read under TO (inside an input root)."""
    sees: tuple[str, ...] | None = None
    """What HELLO says this worker can see (the roots as given and resolved, each FROM); None: worked out from
    `input_roots` and `path_maps`."""
    watts_per_core: float = defaults.WATTS_PER_CORE
    """One busy core's power, for `estimated` job energy where RAPL cannot be read."""
    quality_inline: bool = defaults.QUALITY_INLINE
    """Measure quality inside the encode where this worker's FFmpeg can (`--quality-inline`)."""


class WorkerExit(Exception):
    """The loop is over; `code` is the process exit status."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
