"""Every default in one place, each with a one-line doc and an environment override.

Values are read once at import; command-line options override them. Durations are seconds.
"""

from __future__ import annotations

import os
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    from ffrtmp.units import parse_duration

    return parse_duration(raw, field=name)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name) or default


PROTOCOL_VERSION = 1
"""Wire protocol version; the master refuses peers that speak another one."""

MASTER_URL = _env_str("FFRTMP_MASTER", "tcp://127.0.0.1:8080")
"""Where clients and workers find the master."""

MASTER_PORT = _env_int("FFRTMP_PORT", 8080)
"""The master's ZeroMQ port."""

BIND_ADDRESS = _env_str("FFRTMP_BIND", "0.0.0.0")
"""The interface the master binds."""

METRICS_PORT = _env_int("FFRTMP_METRICS_PORT", 9090)
"""The master's Prometheus port."""

WORKER_METRICS_PORT = _env_int("FFRTMP_WORKER_METRICS_PORT", 9091)
"""A worker's Prometheus port."""

CLIENT_TIMEOUT = _env_float("FFRTMP_TIMEOUT", 10.0)
"""How long a client waits for the master before exit 3."""

MAX_RETRIES = _env_int("FFRTMP_MAX_RETRIES", 3)
"""Retries of a failed attempt before the job fails for good."""

SCHEDULER_INTERVAL = _env_float("FFRTMP_SCHEDULER_INTERVAL", 5.0)
"""Period of the master's maintenance pass (dispatch itself is event-driven)."""

HEARTBEAT_INTERVAL = _env_float("FFRTMP_HEARTBEAT_INTERVAL", 1.0)
"""How often workers and master heartbeat each other."""

NODE_TIMEOUT = _env_float("FFRTMP_NODE_TIMEOUT", 10.0)
"""Silence after which a worker is offline and its attempts go back to pending."""

STALL_TIMEOUT = _env_float("FFRTMP_STALL_TIMEOUT", 600.0)
"""A running attempt whose progress has not moved for this long is stalled."""

LOG_RETENTION = _env_float("FFRTMP_LOG_RETENTION", 7 * 86400.0)
"""Stored job log lines older than this are deleted."""

FORGET_OFFLINE = 86400.0
"""A node offline (with nothing left running) this long is forgotten: it leaves `nodes list` and the metrics."""

LOG_MAX_JOB_BYTES = _env_int("FFRTMP_LOG_MAX_JOB_BYTES", 10 * 1024 * 1024)
"""A job's stored log is cut (with a marker line) past this size."""

LOG_MAX_TOTAL_BYTES = _env_int("FFRTMP_LOG_MAX_TOTAL_BYTES", 2 * 1024 * 1024 * 1024)
"""Past this much stored log, the oldest finished jobs' logs are deleted first."""

RESULT_RESEND_INTERVAL = _env_float("FFRTMP_RESULT_RESEND", 2.0)
"""A worker resends an unacknowledged RESULT this often."""

RETRY_BACKOFF_BASE = _env_float("FFRTMP_RETRY_BACKOFF", 5.0)
"""First retry delay; it doubles for each further attempt."""

RETRY_BACKOFF_MAX = _env_float("FFRTMP_RETRY_BACKOFF_MAX", 300.0)
"""Cap of the retry delay."""

RECONNECT_MIN = 1.0
"""First reconnect delay of a worker that lost the master (doubles, with jitter)."""

RECONNECT_MAX = 32.0
"""Cap of the worker's reconnect delay."""

MAX_MESSAGE_BYTES = _env_int("FFRTMP_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
"""Peers that send a bigger frame are disconnected (ZMQ_MAXMSGSIZE)."""

MAX_BATCH = 2000
"""Messages the master handles per store transaction (group commit)."""

LOG_BATCH_LINES = 100
"""A worker ships log lines in batches of at most this many lines ..."""

LOG_BATCH_SECONDS = 0.25
"""... or at least this often."""

DEFAULT_DURATION = 10.0
"""Seconds of generated source when a job names none."""

MAX_DURATION = 86400.0
"""The longest duration a job may ask for (a day of live stream)."""

ALLOW_PRIVATE_NETWORK = os.environ.get("FFRTMP_ALLOW_PRIVATE_NETWORK", "").lower() in ("1", "true", "yes")
"""Whether a worker lets jobs reach loopback, private and link-local addresses (off: public hosts only)."""

ZAP_DOMAIN = b"ffrtmp"
"""The ZAP domain of the master socket; enforced so CURVE fails closed."""


def data_dir() -> Path:
    """The master's data dir: its database and its CURVE key pair."""
    explicit = os.environ.get("FFRTMP_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ffrtmp"


def config_dir() -> Path:
    """The user's config dir: the client's own CURVE key pair."""
    explicit = os.environ.get("FFRTMP_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ffrtmp"


def work_dir() -> Path:
    """A worker's scratch dir: generated inputs and default outputs."""
    explicit = os.environ.get("FFRTMP_WORK_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ffrtmp" / "work"


def api_key_from_env() -> str | None:
    """The API key from the environment names of SPEC §2, first one set wins."""
    for name in ("FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY"):
        value = os.environ.get(name)
        if value:
            return value
    return None
