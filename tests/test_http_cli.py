"""`ffrtmp master`'s HTTP API options, and Go-style booleans so the seed's command lines run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from ffrtmp.cli.app import app
from ffrtmp.cli.master import go_style_booleans
from ffrtmp.errors import InvalidInput

SEED_LINE = ["--db", "master.db", "--tls=false", "--max-retries=5", "--scheduler-interval=10s", "--metrics=true"]


def parsed(args: list[str]) -> dict[str, object]:
    command = typer.main.get_command(app).commands["master"]  # type: ignore[attr-defined]
    with command.make_context("master", list(args)) as ctx:
        return dict(ctx.params)


def test_the_seed_command_line_parses_as_written() -> None:
    params = parsed(SEED_LINE)
    assert (params["tls"], params["metrics"], params["max_retries"], params["db"]) == (False, True, 5, "master.db")
    assert params["scheduler_interval"] == "10s"
    assert parsed(["--tls=TRUE", "--metrics=0"])["tls"] is True
    assert parsed(["--metrics=0"])["metrics"] is False
    assert parsed(["--insecure=true"])["insecure"] is True
    assert parsed(["--insecure=false"])["insecure"] is False  # no --no- form: false leaves it out


def test_the_worker_takes_go_style_booleans_too() -> None:
    command = typer.main.get_command(app).commands["worker"]  # type: ignore[attr-defined]
    with command.make_context("worker", ["--tls=false"]) as ctx:
        assert ctx.params["tls"] is False


def test_a_go_style_value_that_is_not_a_boolean_names_the_flag() -> None:
    command = typer.main.get_command(app).commands["master"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="^tls: 'maybe' is not true or false"):
        go_style_booleans(command, ["--tls=maybe"])
    # Values of options that take one, and anything after --, are left alone.
    assert go_style_booleans(command, ["--bind=0.0.0.0", "--", "--tls=false"]) == ["--bind=0.0.0.0", "--",
                                                                                  "--tls=false"]


def test_the_api_options_reach_the_master() -> None:
    params = parsed(["--api-port", "9443", "--api-bind", "127.0.0.1", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert (params["api_port"], params["api_bind"]) == (9443, "127.0.0.1")
    assert (str(params["tls_cert"]), str(params["tls_key"])) == ("c.pem", "k.pem")
    assert parsed([])["api_port"] == 8081


def run_master(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ffrtmp", "master", "--data-dir", str(tmp_path / "d"), "--port",
                           "0", "--no-metrics", *args], capture_output=True, text=True, timeout=60, check=False,
                          cwd=tmp_path)


def test_bad_tls_files_and_a_taken_port_stop_the_master_with_one_line(tmp_path: Path) -> None:
    import socket

    (tmp_path / "c.pem").write_text("not a certificate\n")
    (tmp_path / "k.pem").write_text("not a key\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        bad_pair = run_master(tmp_path, "--api-port", port, "--tls-cert", "c.pem", "--tls-key", "k.pem")
        half = run_master(tmp_path, "--api-port", port, "--tls-cert", "c.pem")
        busy = run_master(tmp_path, "--api-port", port, "--api-bind", "127.0.0.1")
    for done, text in ((bad_pair, "tls-cert: "), (half, "tls-key: --tls-cert and --tls-key go together"),
                       (busy, "api-port: cannot listen on 127.0.0.1:")):
        assert done.returncode == 2, done.stderr
        assert text in done.stderr and "Traceback" not in done.stderr
        assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1


def test_an_open_master_keeps_the_api_on_loopback_unless_insecure(tmp_path: Path) -> None:
    done = run_master(tmp_path, "--api-port", "1", "--api-bind", "0.0.0.0")
    assert done.returncode == 2 and "api-bind: 0.0.0.0 would let anyone" in done.stderr


def test_plain_http_is_refused_anywhere_but_loopback(tmp_path: Path) -> None:
    done = run_master(tmp_path, "--api-port", "1", "--api-bind", "0.0.0.0", "--no-api-tls", "--api-key", "k" * 32)
    assert done.returncode == 2, done.stderr
    assert "api-tls: plain HTTP (--no-api-tls) listens on a loopback address only, not 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr
    assert parsed(["--api-tls=false"])["api_tls"] is False and parsed([])["api_tls"] is True
