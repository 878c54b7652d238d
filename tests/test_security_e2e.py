"""Security over real sockets and the CLI: allowed keys and revocation, API keys, tenants, rate limits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster
from tests.conftest import eventually

pytestmark = pytest.mark.slow


def cli(cluster: LocalCluster, *args: str, key: str | None = None, extra: list[str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ffrtmp", *args, *cluster.connection_args(), *(extra or [])]
    if key is not None:
        argv += ["--api-key", key]
    return subprocess.run(argv, capture_output=True, text=True, env=cluster.env, timeout=timeout, check=False)


def test_allow_keys_refuses_strangers_and_a_revoked_key_is_cut_off_without_restart(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    keys = tmp_path / "keys"
    for name in ("ops", "stranger"):
        subprocess.run([sys.executable, "-m", "ffrtmp", "keys", "generate", "--name", name, "--out", str(keys)],
                       check=True, capture_output=True)
    shutil.copy(keys / "ops.key", allowed / "ops.key")
    with LocalCluster(tmp_path / "c", master_args=["--allow-keys", str(allowed)]) as cluster:
        cluster.start_master()
        ops = ["--client-key", str(keys / "ops.key_secret")]
        assert cli(cluster, "jobs", "list", extra=ops).returncode == 0
        stranger = cli(cluster, "jobs", "list", extra=["--client-key", str(keys / "stranger.key_secret"),
                                                       "--timeout", "3"])
        assert stranger.returncode == 3 and "allow-keys" in stranger.stderr
        (allowed / "ops.key").unlink()
        revoked = eventually(lambda: (d := cli(cluster, "jobs", "list", extra=ops)).returncode != 0 and d,
                             timeout=10, message="the revocation to take effect")
        assert revoked.returncode in (3, 4), revoked.stderr
        master_log = (cluster.logs / "master.log").read_text()
        assert master_log.count("refused a connection from an unknown CURVE key") <= 2, "logged once per key"


def test_tenants_see_only_their_own_jobs_over_the_cli(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master()
        acme, globex = cluster.api_key("submit", "acme"), cluster.api_key("submit", "globex")
        worker = cluster.api_key("worker", "*")
        cluster.start_worker("secure", "--api-key", worker)
        done = cli(cluster, "jobs", "submit", "--scenario", "mine", "--engine", "null", "--wait", key=acme)
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.split()[0]
        assert cli(cluster, "jobs", "show", job_id, key=acme).returncode == 0
        other = cli(cluster, "jobs", "show", job_id, key=globex)
        assert other.returncode == 6 and "no job" in other.stderr
        assert cli(cluster, "jobs", "cancel", job_id, key=globex).returncode == 6
        listed = json.loads(cli(cluster, "jobs", "list", "--json", key=globex).stdout)
        assert listed == []
        nobody = cli(cluster, "jobs", "list")
        assert nobody.returncode == 4 and "API key" in nobody.stderr
        wrong = cli(cluster, "jobs", "list", key="ffk_000000000000_" + "x" * 43)
        assert wrong.returncode == 4


def test_a_rate_limited_client_gets_exit_5_while_another_is_served(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, master_args=["--rate-limit", "read=0.2/2"]) as cluster:
        cluster.start_master()
        flood, calm = cluster.api_key("read", "acme"), cluster.api_key("read", "globex")
        results = [cli(cluster, "jobs", "list", key=flood) for _ in range(3)]
        assert [r.returncode for r in results[:2]] == [0, 0]
        assert results[2].returncode == 5 and "retry after" in results[2].stderr
        assert cli(cluster, "jobs", "list", key=calm).returncode == 0
