"""Every environment variable takes effect, shows in `--help` and in the README's table of settings.

The variables are read where a user sets them, in a fresh process (defaults.py reads them at import), and the
effect is what the commands parse: the options typer hands `ffrtmp master`/`ffrtmp worker`, and the defaults.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.cli.master import parse_stall_timeouts
from ffrtmp.units import duration_text, parse_duration, parse_size, size_text

ROOT = Path(__file__).resolve().parents[1]

REPORT = r"""
import inspect, json
import typer.main
from ffrtmp import defaults
from ffrtmp.cli.app import app
from ffrtmp.transport import RouterSocket
from ffrtmp.worker.encoders import Encoder
from ffrtmp.worker.encoders import test_encode_argv

root = typer.main.get_command(app)
def parsed(name):
    with root.commands[name].make_context(name, []) as ctx:
        return ctx.params
constants = {name: getattr(defaults, name) for name in dir(defaults) if name.isupper()}
constants.pop("ZAP_DOMAIN")
print(json.dumps({
    "master": parsed("master"), "worker": parsed("worker"), "defaults": constants,
    "dirs": {"data": defaults.data_dir(), "config": defaults.config_dir(), "work": defaults.work_dir()},
    "api_key": defaults.api_key_from_env(),
    "router_max_message": inspect.signature(RouterSocket).parameters["max_message"].default,
    "vaapi_argv": test_encode_argv("ffmpeg", Encoder("h264_vaapi", "h264", True)),
    "errors": defaults.ENV_ERRORS,
}, default=str))
"""

SET: dict[str, str] = {
    "FFRTMP_MASTER": "tcp://10.9.8.7:1234", "FFRTMP_MASTER_KEY": "/keys/master.key", "FFRTMP_API_KEY": "sekrit",
    "FFRTMP_TIMEOUT": "7.5", "FFRTMP_CLIENT_KEY": "/keys/me.key_secret", "FFRTMP_TLS": "false",
    "FFRTMP_CONFIG_DIR": "/cfg", "FFRTMP_BIND": "127.0.0.2", "FFRTMP_PORT": "8181", "FFRTMP_DATA_DIR": "/data",
    "FFRTMP_METRICS_PORT": "9191", "FFRTMP_MAX_RETRIES": "7", "FFRTMP_SCHEDULER_INTERVAL": "3s",
    "FFRTMP_HEARTBEAT_INTERVAL": "3", "FFRTMP_NODE_TIMEOUT": "20s", "FFRTMP_STALL_TIMEOUT": "2m live=30s",
    "FFRTMP_FORGET_OFFLINE": "2h", "FFRTMP_LOG_RETENTION": "3d", "FFRTMP_LOG_MAX_JOB_BYTES": "5M",
    "FFRTMP_LOG_MAX_TOTAL_BYTES": "1G", "FFRTMP_RETRY_BACKOFF": "2s", "FFRTMP_RETRY_BACKOFF_MAX": "1m",
    "FFRTMP_MAX_MESSAGE_BYTES": "1M", "FFRTMP_WORKER_NAME": "laptop-7", "FFRTMP_SLOTS": "4",
    "FFRTMP_WORK_DIR": "/scratch", "FFRTMP_WORKER_METRICS_PORT": "9292", "FFRTMP_FFMPEG": "/opt/ff/ffmpeg",
    "FFRTMP_DRAIN_TIMEOUT": "5", "FFRTMP_RESULT_RESEND": "4s", "FFRTMP_VAAPI_DEVICE": "/dev/dri/renderD129",
    "FFRTMP_TRACING": "true", "FFRTMP_TRACING_ENDPOINT": "http://collector:4318", "FFRTMP_LOG_LEVEL": "debug",
    "FFRTMP_LOG_FORMAT": "json",
    "FFRTMP_MAX_RESOLUTION": '1920x1080',
    "FFRTMP_MAX_FPS": '60',
    "FFRTMP_MAX_DURATION": '1h',
    "FFRTMP_MAX_BITRATE": '20M',
    "FFRTMP_INSECURE": 'true',
    "FFRTMP_MAX_FOLLOWERS": '100',
    "FFRTMP_MAX_FOLLOWERS_PER_KEY": '10',
    "FFRTMP_WORKER_METRICS_BIND": '0.0.0.0',
    "FFRTMP_INPUT_ROOT": "/media:/srv/clips",
    "FFRTMP_PATH_MAP": "/mnt/media=/srv/media:/mnt/old=/srv/old",
    "FFRTMP_S3_ENDPOINT": "http://minio:9000",
    "FFRTMP_ALLOW_PRIVATE_NETWORK": "1",
    "FFRTMP_QUALITY_INLINE": "0",
    "FFRTMP_STORE_MIN_FREE": "16M",
    "FFRTMP_SUBMIT_KEY_TTL": "2h",
    "FFRTMP_OUTPUT_RETENTION": '2d',
    "FFRTMP_DELIVER_TIMEOUT": "3",
    "FFRTMP_PREFETCH": "0",
    "FFRTMP_CACHE_MAX_BYTES": "3G",
    "FFRTMP_PREAUTH_RATE": '250',
    "FFRTMP_LEASE_TTL": "4s",
    "FFRTMP_LEASE_RENEW": "1s",
    "FFRTMP_STANDBY_POLL": "750ms",
    "FFRTMP_API_PORT": "8443",
    "FFRTMP_API_BIND": "127.0.0.3",
    "FFRTMP_API_TLS": "off",
    "FFRTMP_TLS_CERT": "/pki/api.pem",
    "FFRTMP_TLS_KEY": "/pki/api-key.pem",
    "FFRTMP_FILES_PORT": "8282",
    "FFRTMP_FILES": "/stash/files",
    "FFRTMP_FILES_RETENTION": "3d",
    "FFRTMP_FILES_MAX_BYTES": "500G",
    "FFRTMP_WATTS_PER_CORE": "12.5",
    "FFRTMP_ENERGY_PRICE": "0.31",
    "FFRTMP_CPU_HOUR_PRICE": "0.05",
    "FFRTMP_CURRENCY": "SEK",
}

EFFECT: dict[str, Any] = {
    "FFRTMP_MASTER": lambda r: r["worker"]["master"],
    "FFRTMP_MASTER_KEY": lambda r: r["worker"]["master_key"],
    "FFRTMP_API_KEY": lambda r: (r["master"]["api_key"], r["worker"]["api_key"], r["api_key"]),
    "FFRTMP_TIMEOUT": lambda r: (r["worker"]["timeout"], r["defaults"]["CLIENT_TIMEOUT"]),
    "FFRTMP_CLIENT_KEY": lambda r: r["worker"]["client_key"],
    "FFRTMP_TLS": lambda r: (r["master"]["tls"], r["worker"]["tls"]),
    "FFRTMP_CONFIG_DIR": lambda r: r["dirs"]["config"],
    "FFRTMP_BIND": lambda r: r["master"]["bind"],
    "FFRTMP_PORT": lambda r: r["master"]["port"],
    "FFRTMP_DATA_DIR": lambda r: (r["master"]["data_dir"], r["dirs"]["data"]),
    "FFRTMP_METRICS_PORT": lambda r: r["master"]["metrics_port"],
    "FFRTMP_MAX_RETRIES": lambda r: r["master"]["max_retries"],
    "FFRTMP_SCHEDULER_INTERVAL": lambda r: parse_duration(r["master"]["scheduler_interval"]),
    "FFRTMP_HEARTBEAT_INTERVAL": lambda r: parse_duration(r["master"]["heartbeat_interval"]),
    "FFRTMP_NODE_TIMEOUT": lambda r: parse_duration(r["master"]["node_timeout"]),
    "FFRTMP_STALL_TIMEOUT": lambda r: (parse_stall_timeouts(r["master"]["stall_timeout"]),
                                       r["defaults"]["STALL_TIMEOUT"]),
    "FFRTMP_FORGET_OFFLINE": lambda r: parse_duration(r["master"]["forget_offline"]),
    "FFRTMP_LOG_RETENTION": lambda r: parse_duration(r["master"]["log_retention"]),
    "FFRTMP_LOG_MAX_JOB_BYTES": lambda r: (parse_size(r["master"]["log_max_job"]), r["defaults"]["LOG_MAX_JOB_BYTES"]),
    "FFRTMP_LOG_MAX_TOTAL_BYTES": lambda r: parse_size(r["master"]["log_max_total"]),
    "FFRTMP_RETRY_BACKOFF": lambda r: parse_duration(r["master"]["retry_backoff"]),
    "FFRTMP_RETRY_BACKOFF_MAX": lambda r: parse_duration(r["master"]["retry_backoff_max"]),
    "FFRTMP_MAX_MESSAGE_BYTES": lambda r: r["router_max_message"],
    "FFRTMP_WORKER_NAME": lambda r: r["worker"]["name"],
    "FFRTMP_SLOTS": lambda r: r["worker"]["slots"],
    "FFRTMP_WORK_DIR": lambda r: (r["worker"]["work_dir"], r["dirs"]["work"]),
    "FFRTMP_WORKER_METRICS_PORT": lambda r: r["worker"]["metrics_port"],
    "FFRTMP_FFMPEG": lambda r: r["worker"]["ffmpeg"],
    "FFRTMP_DRAIN_TIMEOUT": lambda r: r["worker"]["drain_timeout"],
    "FFRTMP_RESULT_RESEND": lambda r: r["defaults"]["RESULT_RESEND_INTERVAL"],
    "FFRTMP_VAAPI_DEVICE": lambda r: r["vaapi_argv"][r["vaapi_argv"].index("-vaapi_device") + 1],
    "FFRTMP_TRACING": lambda r: (r["master"]["tracing"], r["worker"]["tracing"]),
    "FFRTMP_TRACING_ENDPOINT": lambda r: r["worker"]["tracing_endpoint"],
    "FFRTMP_LOG_LEVEL": lambda r: (r["master"]["log_level"], r["worker"]["log_level"]),
    "FFRTMP_LOG_FORMAT": lambda r: (r["master"]["log_format"], r["worker"]["log_format"]),
    "FFRTMP_MAX_RESOLUTION": lambda r: r["master"]["max_resolution"],
    "FFRTMP_MAX_FPS": lambda r: r["master"]["max_fps"],
    "FFRTMP_MAX_DURATION": lambda r: r["master"]["max_duration"],
    "FFRTMP_MAX_BITRATE": lambda r: r["master"]["max_bitrate"],
    "FFRTMP_INSECURE": lambda r: r["master"]["insecure"],
    "FFRTMP_MAX_FOLLOWERS": lambda r: r["master"]["max_followers"],
    "FFRTMP_MAX_FOLLOWERS_PER_KEY": lambda r: r["master"]["max_followers_per_key"],
    "FFRTMP_WORKER_METRICS_BIND": lambda r: r["worker"]["metrics_bind"],
    "FFRTMP_INPUT_ROOT": lambda r: r["worker"]["input_root"],
    "FFRTMP_PATH_MAP": lambda r: (r["worker"]["path_map"], r["defaults"]["PATH_MAP"]),
    "FFRTMP_S3_ENDPOINT": lambda r: r["defaults"]["S3_ENDPOINT"],
    "FFRTMP_ALLOW_PRIVATE_NETWORK": lambda r: r["worker"]["allow_private_network"],
    "FFRTMP_QUALITY_INLINE": lambda r: (r["worker"]["quality_inline"], r["defaults"]["QUALITY_INLINE"]),
    "FFRTMP_STORE_MIN_FREE": lambda r: (parse_size(r["master"]["store_min_free"]), r["defaults"]["STORE_MIN_FREE"]),
    "FFRTMP_SUBMIT_KEY_TTL": lambda r: parse_duration(r["master"]["submit_key_ttl"]),
    "FFRTMP_OUTPUT_RETENTION": lambda r: parse_duration(r["worker"]["output_retention"]),
    "FFRTMP_DELIVER_TIMEOUT": lambda r: r["worker"]["deliver_timeout"],
    "FFRTMP_PREFETCH": lambda r: (r["worker"]["prefetch"], r["defaults"]["PREFETCH"]),
    "FFRTMP_CACHE_MAX_BYTES": lambda r: (parse_size(r["worker"]["cache_max_bytes"]), r["defaults"]["CACHE_MAX_BYTES"]),
    "FFRTMP_PREAUTH_RATE": lambda r: r["defaults"]["PREAUTH_RATE"],
    "FFRTMP_LEASE_TTL": lambda r: (parse_duration(r["master"]["lease_ttl"]), r["defaults"]["LEASE_TTL"]),
    "FFRTMP_LEASE_RENEW": lambda r: (parse_duration(r["master"]["lease_renew"]), r["defaults"]["LEASE_RENEW"]),
    "FFRTMP_STANDBY_POLL": lambda r: (parse_duration(r["master"]["standby_poll"]), r["defaults"]["STANDBY_POLL"]),
    "FFRTMP_API_PORT": lambda r: (r["master"]["api_port"], r["defaults"]["API_PORT"]),
    "FFRTMP_API_BIND": lambda r: (r["master"]["api_bind"], r["defaults"]["API_BIND"]),
    "FFRTMP_API_TLS": lambda r: (r["master"]["api_tls"], r["defaults"]["API_TLS"]),
    "FFRTMP_TLS_CERT": lambda r: r["master"]["tls_cert"],
    "FFRTMP_TLS_KEY": lambda r: r["master"]["tls_key"],
    "FFRTMP_FILES_PORT": lambda r: (r["master"]["files_port"], r["defaults"]["FILES_PORT"]),
    "FFRTMP_FILES": lambda r: r["master"]["files"],
    "FFRTMP_FILES_RETENTION": lambda r: parse_duration(r["master"]["files_retention"]),
    "FFRTMP_FILES_MAX_BYTES": lambda r: r["master"]["files_max_bytes"] and parse_size(r["master"]["files_max_bytes"]),
    "FFRTMP_WATTS_PER_CORE": lambda r: (r["worker"]["watts_per_core"], r["defaults"]["WATTS_PER_CORE"]),
    "FFRTMP_ENERGY_PRICE": lambda r: r["master"]["energy_price"],
    "FFRTMP_CPU_HOUR_PRICE": lambda r: r["master"]["cpu_hour_price"],
    "FFRTMP_CURRENCY": lambda r: r["master"]["currency"],
}

EXPECTED: dict[str, Any] = {
    "FFRTMP_MASTER": "tcp://10.9.8.7:1234", "FFRTMP_MASTER_KEY": "/keys/master.key",
    "FFRTMP_API_KEY": ("sekrit", "sekrit", "sekrit"), "FFRTMP_TIMEOUT": (7.5, 7.5),
    "FFRTMP_CLIENT_KEY": "/keys/me.key_secret", "FFRTMP_TLS": (False, False), "FFRTMP_CONFIG_DIR": "/cfg",
    "FFRTMP_BIND": "127.0.0.2", "FFRTMP_PORT": 8181, "FFRTMP_DATA_DIR": ("/data", "/data"),
    "FFRTMP_METRICS_PORT": 9191, "FFRTMP_MAX_RETRIES": 7, "FFRTMP_SCHEDULER_INTERVAL": 3.0,
    "FFRTMP_HEARTBEAT_INTERVAL": 3.0, "FFRTMP_NODE_TIMEOUT": 20.0,
    "FFRTMP_STALL_TIMEOUT": ((120.0, {"live": 30.0}), 120.0), "FFRTMP_FORGET_OFFLINE": 7200.0,
    "FFRTMP_LOG_RETENTION": 3 * 86400.0, "FFRTMP_LOG_MAX_JOB_BYTES": (5 * 2**20, 5 * 2**20),
    "FFRTMP_LOG_MAX_TOTAL_BYTES": 2**30, "FFRTMP_RETRY_BACKOFF": 2.0, "FFRTMP_RETRY_BACKOFF_MAX": 60.0,
    "FFRTMP_MAX_MESSAGE_BYTES": 2**20, "FFRTMP_WORKER_NAME": "laptop-7", "FFRTMP_SLOTS": 4,
    "FFRTMP_WORK_DIR": ("/scratch", "/scratch"), "FFRTMP_WORKER_METRICS_PORT": 9292,
    "FFRTMP_FFMPEG": "/opt/ff/ffmpeg", "FFRTMP_DRAIN_TIMEOUT": 5.0, "FFRTMP_RESULT_RESEND": 4.0,
    "FFRTMP_VAAPI_DEVICE": "/dev/dri/renderD129", "FFRTMP_TRACING": (True, True),
    "FFRTMP_TRACING_ENDPOINT": "http://collector:4318", "FFRTMP_LOG_LEVEL": ("debug", "debug"),
    "FFRTMP_LOG_FORMAT": ("json", "json"),
    "FFRTMP_MAX_RESOLUTION": "1920x1080",
    "FFRTMP_MAX_FPS": 60,
    "FFRTMP_MAX_DURATION": "1h",
    "FFRTMP_MAX_BITRATE": "20M",
    "FFRTMP_INSECURE": True,
    "FFRTMP_MAX_FOLLOWERS": 100,
    "FFRTMP_MAX_FOLLOWERS_PER_KEY": 10,
    "FFRTMP_WORKER_METRICS_BIND": "0.0.0.0",
    "FFRTMP_INPUT_ROOT": ["/media", "/srv/clips"],
    "FFRTMP_PATH_MAP": (["/mnt/media=/srv/media", "/mnt/old=/srv/old"],) * 2,
    "FFRTMP_S3_ENDPOINT": "http://minio:9000",
    "FFRTMP_ALLOW_PRIVATE_NETWORK": True,
    "FFRTMP_QUALITY_INLINE": (False, False),
    "FFRTMP_STORE_MIN_FREE": (16 * 2**20, 16 * 2**20),
    "FFRTMP_SUBMIT_KEY_TTL": 7200.0,
    "FFRTMP_OUTPUT_RETENTION": 2 * 86400.0,
    "FFRTMP_DELIVER_TIMEOUT": 3.0,
    "FFRTMP_PREFETCH": (0, 0),
    "FFRTMP_CACHE_MAX_BYTES": (3 * 2**30, 3 * 2**30),
    "FFRTMP_PREAUTH_RATE": 250.0,
    "FFRTMP_LEASE_TTL": (4.0, 4.0),
    "FFRTMP_LEASE_RENEW": (1.0, 1.0),
    "FFRTMP_STANDBY_POLL": (0.75, 0.75),
    "FFRTMP_API_PORT": (8443, 8443),
    "FFRTMP_API_BIND": ("127.0.0.3", "127.0.0.3"),
    "FFRTMP_API_TLS": (False, False),
    "FFRTMP_TLS_CERT": "/pki/api.pem",
    "FFRTMP_TLS_KEY": "/pki/api-key.pem",
    "FFRTMP_FILES_PORT": (8282, 8282),
    "FFRTMP_FILES": "/stash/files",
    "FFRTMP_FILES_RETENTION": 3 * 86400.0,
    "FFRTMP_FILES_MAX_BYTES": 500 * 2**30,
    "FFRTMP_WATTS_PER_CORE": (12.5, 12.5),
    "FFRTMP_ENERGY_PRICE": "0.31",
    "FFRTMP_CPU_HOUR_PRICE": "0.05",
    "FFRTMP_CURRENCY": "SEK",
}


def clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith("FFRTMP_") and k not in ("MASTER_API_KEY", "FFMPEG_RTMP_API_KEY")}


def report(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", REPORT], capture_output=True, text=True, timeout=60,
                          env={**clean_env(), **env}, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def as_compared(value: Any) -> Any:
    """JSON turned tuples into lists; compare them as the same thing."""
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def with_all_set() -> dict[str, Any]:
    return report(SET)


@pytest.fixture(scope="module")
def with_none_set() -> dict[str, Any]:
    return report({})


def source_variables() -> set[str]:
    """Every FFRTMP_* name the code reads."""
    names: set[str] = set()
    for path in (ROOT / "ffrtmp").rglob("*.py"):
        names.update(re.findall(r"\"(FFRTMP_[A-Z0-9_]+)\"", path.read_text()))
    return names


def test_the_table_of_this_test_covers_every_variable_the_code_reads() -> None:
    assert source_variables() == set(SET) == set(EFFECT) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(SET))
def test_each_variable_takes_effect(name: str, with_all_set: dict[str, Any], with_none_set: dict[str, Any]) -> None:
    assert with_all_set["errors"] == {}
    assert as_compared(EFFECT[name](with_all_set)) == as_compared(EXPECTED[name])
    assert as_compared(EFFECT[name](with_none_set)) != as_compared(EXPECTED[name]), "unset, the default applies"


ALL_HELP = r"""
import click, typer.main
from ffrtmp.cli.app import app

def helps(command, path):
    with click.Context(command, info_name=path) as ctx:
        yield ctx.get_help()
    for name, sub in getattr(command, "commands", {}).items():
        yield from helps(sub, f"{path} {name}")

print("\n".join(helps(typer.main.get_command(app), "ffrtmp")))
"""


def test_each_variable_shows_in_help_and_in_the_readme() -> None:
    done = subprocess.run([sys.executable, "-c", ALL_HELP], capture_output=True, text=True,
                          env={**clean_env(), "COLUMNS": "200"}, timeout=60, check=True)
    helps = " ".join(done.stdout.split())
    assert "ffrtmp worker" in helps and "ffrtmp jobs submit" in helps, "every command's help, subcommands too"
    readme = (ROOT / "README.md").read_text()
    table_rows = {match for line in readme.splitlines() if line.startswith("| `FFRTMP_")
                  for match in re.findall(r"`(FFRTMP_[A-Z0-9_]+)`", line.split("|")[1])}
    for name in sorted(SET):
        assert name in helps, f"{name} is in no --help"
        assert name in table_rows, f"{name} has no row in the README's table of settings"


@pytest.mark.parametrize(("name", "value"), [("FFRTMP_HEARTBEAT_INTERVAL", "soon"), ("FFRTMP_PORT", "eighty"),
                                             ("FFRTMP_LOG_MAX_JOB_BYTES", "lots")])
def test_a_variable_that_does_not_parse_is_a_clear_exit_2(name: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "master", "--help"], capture_output=True, text=True,
                          env={**clean_env(), name: value}, timeout=60, check=False)
    assert done.returncode == 2
    assert f"{name}: {value!r}" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.0, 1.5, 5.0, 90.0, 600.0, 3600.0, 86400.0, 7 * 86400.0])
def test_a_default_duration_reads_back_as_itself(seconds: float) -> None:
    assert parse_duration(duration_text(seconds)) == seconds


@pytest.mark.parametrize("size", [1, 1000, 1024, 4 * 2**20, 10 * 2**20, 2 * 2**30, 3 * 2**40 + 1])
def test_a_default_size_reads_back_as_itself(size: int) -> None:
    assert parse_size(size_text(size)) == size
