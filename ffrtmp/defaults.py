"""Every default in one place, each with a one-line doc and an environment override.

Values are read once at import; command-line options override them. Durations are seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_ERRORS: dict[str, str] = {}
"""Environment overrides that did not parse: the command exits 2 naming them (ffrtmp.cli.app), nothing crashes."""


def _env(name: str, default: Any, parse: Callable[[str], Any]) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    from ffrtmp.errors import InvalidInput

    try:
        return parse(raw)
    except InvalidInput as exc:
        ENV_ERRORS[name] = exc.problem
    except ValueError:
        ENV_ERRORS[name] = f"{raw!r} is not a number"
    return default


def _env_float(name: str, default: float) -> float:
    from ffrtmp.units import parse_duration

    value: float = _env(name, default, lambda raw: parse_duration(raw, field=name))
    return value


def _env_int(name: str, default: int) -> int:
    value: int = _env(name, default, int)
    return value


def _env_size(name: str, default: int) -> int:
    """A byte count: `10M`, `2G` or plain bytes, as the matching command-line option reads it."""
    from ffrtmp.units import parse_size

    value: int = _env(name, default, lambda raw: parse_size(raw, field=name))
    return value


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _stall_default(raw: str, default: float) -> float:
    """The default part of `--stall-timeout`'s words (`10m live=30s`); the per-queue ones are the master's to check."""
    from ffrtmp.units import parse_duration

    plain = [word for word in raw.split() if "=" not in word]
    return parse_duration(plain[-1], field="FFRTMP_STALL_TIMEOUT") if plain else default


PROTOCOL_VERSION = 1
"""Wire protocol version; the master refuses peers that speak another one."""

MASTER_URL = _env_str("FFRTMP_MASTER", "tcp://127.0.0.1:8080")
"""Where clients and workers find the master."""

MASTER_PORT = _env_int("FFRTMP_PORT", 8080)
"""The master's ZeroMQ port."""

BIND_ADDRESS = _env_str("FFRTMP_BIND", "auto")
"""The interface the master binds; `auto`: 127.0.0.1 until it has an API key or --allow-keys, then 0.0.0.0."""

METRICS_PORT = _env_int("FFRTMP_METRICS_PORT", 9090)
"""The master's Prometheus port."""

WORKER_METRICS_PORT = _env_int("FFRTMP_WORKER_METRICS_PORT", 9091)
"""A worker's Prometheus port."""

API_PORT = _env_int("FFRTMP_API_PORT", 8081)
FILES_PORT = _env_int("FFRTMP_FILES_PORT", 8082)
"""The master's data channel for file bytes (docs/files.md); 0: off."""
FILES_RETENTION = "7d"
"""Stored files no job keeps are removed this long after their last use."""
"""The master's HTTPS JSON API port; 0 turns the API off."""

API_BIND = _env_str("FFRTMP_API_BIND", "auto")
API_TLS = os.environ.get("FFRTMP_API_TLS", "1").lower() not in ("0", "false", "no", "off")
"""HTTPS (the default); off: plain HTTP on a loopback address only, for a TLS-terminating proxy in front."""
"""The interface the HTTP API binds; `auto`: 127.0.0.1 until the master has an API key, then 0.0.0.0."""

API_MAX_BODY = 8 * 1024 * 1024
"""The largest request body the HTTP API reads (a submit of thousands of jobs fits)."""
API_MAX_CONNECTIONS = 20_000
"""Open HTTP connections at most; past it new ones are closed at once (idle keep-alives cost ~5 KiB each)."""
API_IDLE_TIMEOUT = 120.0
"""An HTTP keep-alive connection silent this long is closed."""
API_BODY_TIMEOUT = 30.0
"""A request body not fully read after this long closes its connection (a slow-loris client)."""
API_REQUEST_TIMEOUT = 30.0
"""The longest an HTTP request waits for the master's loop before it answers 503."""
API_MAX_PENDING = 10_000
"""HTTP requests queued for the master's loop at most; past it the API answers 503 at once."""

WORKER_METRICS_BIND = _env_str("FFRTMP_WORKER_METRICS_BIND", "127.0.0.1")
"""The interface a worker's Prometheus endpoint listens on (unauthenticated: loopback unless told)."""

CLIENT_TIMEOUT: float = _env("FFRTMP_TIMEOUT", 10.0, float)  # seconds, as the --timeout option reads it
"""How long a client waits for the master before exit 3."""

MAX_RETRIES = _env_int("FFRTMP_MAX_RETRIES", 3)
"""Retries of a failed attempt before the job fails for good."""

SCHEDULER_INTERVAL = _env_float("FFRTMP_SCHEDULER_INTERVAL", 5.0)
"""Period of the master's maintenance pass (dispatch itself is event-driven)."""

HEARTBEAT_INTERVAL = _env_float("FFRTMP_HEARTBEAT_INTERVAL", 1.0)
"""How often workers and master heartbeat each other."""

NODE_TIMEOUT = _env_float("FFRTMP_NODE_TIMEOUT", 10.0)
"""Silence after which a worker is offline and its attempts go back to pending."""

STALL_TIMEOUT: float = _env("FFRTMP_STALL_TIMEOUT", 600.0, lambda raw: _stall_default(raw, 600.0))
"""A running attempt whose progress has not moved for this long is stalled."""

LOG_RETENTION = _env_float("FFRTMP_LOG_RETENTION", 7 * 86400.0)
"""Stored job log lines older than this are deleted."""

FORGET_OFFLINE = _env_float("FFRTMP_FORGET_OFFLINE", 86400.0)
"""A node offline (nothing left running) this long is forgotten: it leaves `nodes list` and the metrics; 0: never."""

WORKER_SLOTS = _env_int("FFRTMP_SLOTS", 1)
"""Jobs a worker runs at once."""

DRAIN_TIMEOUT: float = _env("FFRTMP_DRAIN_TIMEOUT", 60.0, float)  # seconds, as --drain-timeout reads it
"""Seconds a draining worker's running jobs get to finish before they are stopped."""

DELIVER_TIMEOUT: float = _env("FFRTMP_DELIVER_TIMEOUT", 10.0, float)  # seconds, as --deliver-timeout reads it
"""A stopping worker offers its unacknowledged results this long once nothing runs, then exits keeping them."""

WATTS_PER_CORE = _env_float("FFRTMP_WATTS_PER_CORE", 8.0)
"""Watts one busy CPU core draws, for `estimated` job energy where RAPL is not readable: a server package's
TDP over its cores (e.g. 205 W / 32 = 6.4 W, a 170 W 16-core desktop part 10.6 W) lands between 6 and 11."""

PREFETCH = _env_int("FFRTMP_PREFETCH", 1)
"""Jobs a worker holds beyond its free slots, so the next one starts the moment a slot frees; 0: none."""

CACHE_MAX_BYTES = _env_size("FFRTMP_CACHE_MAX_BYTES", 10 * 1024**3)
"""A worker's cache of fetched inputs (WORK_DIR/cache) evicts the least recently used past this."""

LOG_MAX_JOB_BYTES = _env_size("FFRTMP_LOG_MAX_JOB_BYTES", 10 * 1024 * 1024)
"""A job's stored log is cut (with a marker line) past this size."""

LOG_MAX_TOTAL_BYTES = _env_size("FFRTMP_LOG_MAX_TOTAL_BYTES", 2 * 1024 * 1024 * 1024)
"""Past this much stored log, the oldest finished jobs' logs are deleted first."""

RESULT_RESEND_INTERVAL = _env_float("FFRTMP_RESULT_RESEND", 2.0)
"""A worker resends an unacknowledged RESULT this often."""

OUTPUT_RETENTION = _env_float("FFRTMP_OUTPUT_RETENTION", 7 * 86400.0)
"""A worker deletes the outputs in its work dir older than this (0: never); stray partial files go too."""

RETRY_BACKOFF_BASE = _env_float("FFRTMP_RETRY_BACKOFF", 5.0)
"""First retry delay; it doubles for each further attempt."""

RETRY_BACKOFF_MAX = _env_float("FFRTMP_RETRY_BACKOFF_MAX", 300.0)
"""Cap of the retry delay."""

RECONNECT_MIN = 1.0
"""First reconnect delay of a worker that lost the master (doubles, with jitter)."""

RECONNECT_MAX = 32.0
"""Cap of the worker's reconnect delay."""

MAX_MESSAGE_BYTES = _env_size("FFRTMP_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
"""Peers that send a bigger frame are disconnected (ZMQ_MAXMSGSIZE)."""

MAX_BATCH = 2000
"""Messages the master handles per store transaction (group commit)."""

PREAUTH_RATE = _env_float("FFRTMP_PREAUTH_RATE", 1000.0)
"""Frames per second (burst: twice that) the master reads from one peer that is not a joined worker, before
any authorization (master/inbound.py)."""

LEASE_TTL = _env_float("FFRTMP_LEASE_TTL", 2.0)
"""How long the leader's lease lasts unrenewed: a killed leader is replaced about this long after its last renewal."""

LEASE_RENEW = _env_float("FFRTMP_LEASE_RENEW", 0.5)
"""How often the leader renews its lease (several renewals fit in one ttl, so a slow loop keeps it)."""

STANDBY_POLL = _env_float("FFRTMP_STANDBY_POLL", 0.25)
"""How often a standby master reads the lease, to take it over once it is free or expired."""

LOG_BATCH_LINES = 100
"""A worker ships log lines in batches of at most this many lines ..."""

LOG_BATCH_SECONDS = 0.25
"""... or at least this often."""

LOG_MAX_FOLLOWERS = _env_int("FFRTMP_MAX_FOLLOWERS", 4096)
"""Log followers and waits (`logs --follow`, `Client.wait`) a master serves at once, all keys together."""

LOG_MAX_FOLLOWERS_PER_KEY = _env_int("FFRTMP_MAX_FOLLOWERS_PER_KEY", 256)
"""Log followers and waits one API key (or one connection, without keys) may hold open at once."""

DEFAULT_DURATION = 10.0
"""Seconds of generated source when a job names none."""

MAX_DURATION = 86400.0
"""The longest duration a job may ask for (a day of live stream)."""

MAX_RESOLUTION = _env_str("FFRTMP_MAX_RESOLUTION", "3840x2160")
"""The largest frame a master accepts in a job (either orientation)."""

MAX_FPS = _env_int("FFRTMP_MAX_FPS", 120)
"""The highest frame rate a master accepts in a job."""

MAX_JOB_DURATION = _env_str("FFRTMP_MAX_DURATION", "6h")
"""The longest duration a master accepts in a job (at most MAX_DURATION)."""

MAX_BITRATE = _env_str("FFRTMP_MAX_BITRATE", "50M")
"""The highest bitrate a master accepts in a job."""

LIST_PAGE = 1000
"""The most jobs one `list` request returns; the reply's cursor fetches the next page."""

QUALITY_INLINE = os.environ.get("FFRTMP_QUALITY_INLINE", "1").lower() not in ("0", "false", "no", "off")
"""Whether a worker measures a job's quality inside its FFmpeg encode where that FFmpeg can (7.1+); off: always
in a second FFmpeg after the encode (the way before 7.1)."""

ALLOW_PRIVATE_NETWORK = os.environ.get("FFRTMP_ALLOW_PRIVATE_NETWORK", "").lower() in ("1", "true", "yes")
"""Whether a worker lets jobs reach loopback, private and link-local addresses (off: public hosts only)."""

PATH_MAP = [pair for pair in os.environ.get("FFRTMP_PATH_MAP", "").split(os.pathsep) if pair.strip()]
"""A worker's `--path-map FROM=TO` pairs (':' between pairs): shared storage it mounts at another path."""

S3_ENDPOINT = os.environ.get("FFRTMP_S3_ENDPOINT") or None
"""Where a master's `--files s3://BUCKET/PREFIX` bucket is (None: where boto3's AWS_* settings say)."""

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
    """The API key from FFRTMP_API_KEY, MASTER_API_KEY or FFMPEG_RTMP_API_KEY: the first one set wins."""
    for name in ("FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY"):
        value = os.environ.get(name)
        if value:
            return value
    return None


STORE_MIN_FREE = _env_size("FFRTMP_STORE_MIN_FREE", 8 * 2**20)
"""Free space the master keeps on its store's disk: below it, it refuses writes (and will not start)."""

SUBMIT_KEY_TTL = _env_float("FFRTMP_SUBMIT_KEY_TTL", 24 * 3600.0)
"""How long the master remembers a submit's idempotency key (a repeat within it gets the same ids)."""
