"""`ffrtmp master`'s cluster flags and `ffrtmp cluster status`'s table: checked values, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from ffrtmp.cli.app import app
from ffrtmp.cli.cluster import status_table
from ffrtmp.cli.master import cluster_options
from ffrtmp.errors import InvalidInput
from ffrtmp.master.server import MasterOptions

T0 = 1_700_000_000.0


def test_the_cluster_flags_set_the_options() -> None:
    options = MasterOptions()
    cluster_options(options, "m-2", "tcp://m2.example:8080", "a:8080,b:8080", "4s", "1s", "100ms")
    assert (options.name, options.advertise) == ("m-2", "tcp://m2.example:8080")
    assert (options.lease.ttl, options.lease.renew_every, options.lease.poll_every) == (4.0, 1.0, 0.1)


@pytest.mark.parametrize(("args", "field"), [
    (("bad name!", None, None), "name"),
    ((None, "tcp://m2.example", None), "advertise"),
    ((None, None, "a:8080,b:port"), "cluster-peers"),
])
def test_a_bad_cluster_flag_names_itself(args: tuple[str | None, str | None, str | None], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        cluster_options(MasterOptions(), *args, "2.5s", "500ms", "250ms")
    assert refused.value.field == field


def test_node_id_is_the_seeds_spelling_of_name_and_the_seed_flags_are_accepted() -> None:
    command = typer.main.get_command(app).commands["master"]  # type: ignore[attr-defined]
    with command.make_context("master", ["--node-id", "edge-1", "--cluster-mode", "--cluster-peers",
                                         "a:8080,b:8080"]) as ctx:
        assert ctx.params["name"] == "edge-1" and ctx.params["cluster_mode"] is True


def test_a_renewal_slower_than_half_the_lease_is_a_clear_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "master", "--data-dir", str(tmp_path), "--no-metrics",
                           "--lease-ttl", "2s", "--lease-renew", "1500ms"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "lease-renew: 1.5s must be at most half of --lease-ttl (2s)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_status_table_names_the_leader_and_when_each_master_was_seen() -> None:
    from rich.console import Console

    status = {"leader": "m2", "term": 3, "address": "tcp://m2:8080",
              "masters": [{"name": "m1", "address": "tcp://m1:8080", "role": "standby", "last_seen": T0 - 75},
                          {"name": "m2", "address": "tcp://m2:8080", "role": "leader", "last_seen": T0}]}
    console = Console(width=120, record=True)
    console.print(status_table(status, T0))
    text = console.export_text()
    assert "leader: m2 (term 3, tcp://m2:8080)" in text
    assert "m1" in text and "1m15s ago" in text and "standby" in text
    console = Console(width=120, record=True)
    console.print(status_table({"leader": None, "term": 3, "masters": []}, T0))
    assert "no leader right now (last term 3)" in console.export_text()


def test_the_advertised_address_defaults_to_the_bind_or_the_hosts_name(tmp_path: Path) -> None:
    import socket

    from ffrtmp.master.coordinator import MasterConfig
    from ffrtmp.master.server import MasterServer

    for bind, host in (("127.0.0.1", "127.0.0.1"), ("0.0.0.0", socket.getfqdn())):
        server = MasterServer(MasterOptions(bind=bind, port=0, data_dir=tmp_path / bind, metrics=False,
                                            insecure=True, name="m1", config=MasterConfig(store_min_free=0)))
        try:
            assert server.advertise == f"tcp://{host}:{server.port}"
        finally:
            server.close()
    server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / "given", metrics=False,
                                        advertise="tcp://m1.example:8080", config=MasterConfig(store_min_free=0)))
    try:
        assert server.advertise == "tcp://m1.example:8080"
    finally:
        server.close()
