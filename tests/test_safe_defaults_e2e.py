"""Safe defaults over real master and worker processes and the CLI (issue 12; H3, M2–M5 of docs/design.md)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.master.server import STATE_FILE
from ffrtmp.protocol import Kind, decode, encode, unbatch
from ffrtmp.security import client_keypair, load_public_key
from ffrtmp.transport import DealerSocket
from tests.conftest import eventually
from tests.scrape import free_port

pytestmark = pytest.mark.slow


def ffrtmp(cluster: LocalCluster, *args: str, key: str | None = None, connect: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ffrtmp", *args, *(cluster.connection_args() if connect else [])]
    if key is not None:
        argv += ["--api-key", key]
    return subprocess.run(argv, capture_output=True, text=True, env=cluster.env, timeout=timeout, check=False)


def make_key(cluster: LocalCluster, *options: str) -> dict[str, Any]:
    made = ffrtmp(cluster, "keys", "api", "create", *options, "--json", connect=False)
    assert made.returncode == 0, made.stderr
    return dict(json.loads(made.stdout))


def state(cluster: LocalCluster) -> dict[str, Any]:
    return dict(json.loads((cluster.master_dir / STATE_FILE).read_text()))


def listening(pid: int, port: int) -> set[str]:
    """The addresses process `pid` listens on at `port`."""
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


# ---- H3 ------------------------------------------------------------------------------------------------


def test_revoking_the_last_key_leaves_the_master_closed(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        admin = make_key(cluster, "--role", "admin")
        cluster.start_master()
        assert ffrtmp(cluster, "jobs", "list", key=admin["key"]).returncode == 0
        assert ffrtmp(cluster, "keys", "api", "revoke", admin["id"], connect=False).returncode == 0

        def refused_with_advice() -> subprocess.CompletedProcess[str] | None:
            done = ffrtmp(cluster, "jobs", "list")
            return done if "keys api create" in done.stderr else None

        anonymous = eventually(refused_with_advice, timeout=15, message="the master to see the revocation")
        assert anonymous.returncode == 4
        for args, key in ((("jobs", "list"), admin["key"]), (("nodes", "drain", "w1"), None),
                          (("jobs", "submit", "--scenario", "t", "--engine", "null"), None)):
            done = ffrtmp(cluster, *args, key=key)
            assert done.returncode == 4, (args, done.stdout, done.stderr)


# ---- M5 ------------------------------------------------------------------------------------------------


def test_protected_mode_listens_on_loopback_and_refuses_an_open_network_bind(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        metrics = free_port()
        cluster.start_master(["--bind", "auto"], metrics_port=metrics)
        assert cluster.master is not None
        assert state(cluster)["bind"] == "127.0.0.1"
        assert listening(cluster.master.pid, metrics) == {"127.0.0.1"}, "metrics too"
        assert listening(cluster.master.pid, cluster.port) == {"127.0.0.1"}
        assert "protected mode" in (cluster.logs / "master.log").read_text()
        assert ffrtmp(cluster, "jobs", "list").returncode == 0, "open to this machine, as before"
        cluster.stop()

        open_bind = subprocess.run(
            [sys.executable, "-m", "ffrtmp", "master", "--bind", "0.0.0.0", "--port", "0", "--no-metrics",
             "--data-dir", str(cluster.master_dir)], capture_output=True, text=True, env=cluster.env, timeout=60)
        assert open_bind.returncode == 2
        assert "bind" in open_bind.stderr and "keys api create" in open_bind.stderr
        assert "Traceback" not in open_bind.stderr

        cluster.start_master(["--bind", "0.0.0.0", "--insecure"])
        assert state(cluster)["bind"] == "0.0.0.0"
        cluster.stop()

        make_key(cluster, "--role", "admin")
        cluster.start_master(["--bind", "auto"])
        assert state(cluster)["bind"] == "0.0.0.0", "a master with a key listens on the network"


def test_worker_metrics_listen_on_loopback_unless_told(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master()
        ports = free_port(), free_port()
        quiet = cluster.start_worker("w1", "--engines", "null", "--metrics-port", str(ports[0]))
        told = cluster.start_worker("w2", "--engines", "null", "--metrics-port", str(ports[1]),
                                    "--metrics-bind", "0.0.0.0")
        cluster.wait_for_nodes(["w1", "w2"])
        eventually(lambda: listening(quiet.pid, ports[0]) and listening(told.pid, ports[1]),
                   message="both metrics endpoints")
        assert listening(quiet.pid, ports[0]) == {"127.0.0.1"}
        assert listening(told.pid, ports[1]) == {"0.0.0.0"}


# ---- M2 ------------------------------------------------------------------------------------------------


def test_a_tenant_scoped_worker_runs_only_its_tenants_jobs(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        acme, globex = make_key(cluster, "--role", "submit", "--tenant", "acme"), \
            make_key(cluster, "--role", "submit", "--tenant", "globex")
        admin = make_key(cluster, "--role", "admin")
        cluster.start_master()
        cluster.start_worker("w1", "--engines", "null", "--api-key", make_key(cluster, "--role", "worker",
                                                                              "--tenant", "acme")["key"])
        theirs = ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "null", key=globex["key"])
        assert theirs.returncode == 0, theirs.stderr
        mine = ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "null", "--wait", key=acme["key"])
        assert mine.returncode == 0, mine.stderr
        theirs_id = theirs.stdout.split()[0]

        def waiting() -> dict[str, Any] | None:
            job = json.loads(ffrtmp(cluster, "jobs", "show", theirs_id, "--json", key=admin["key"]).stdout)
            return job if job.get("reason") else None

        job = eventually(waiting, message="globex's job to say why it waits")
        assert job["status"] == "pending" and "tenant globex" in job["reason"]


def test_a_squatter_cannot_take_a_killed_workers_name_and_revocation_cuts_a_worker_off(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        real, other = make_key(cluster, "--role", "worker"), make_key(cluster, "--role", "worker")
        gpu_only = make_key(cluster, "--role", "worker", "--node", "gpu-*")
        admin = make_key(cluster, "--role", "admin")
        cluster.start_master()
        env_key = {"FFRTMP_API_KEY": real["key"]}  # from the environment, never the command line
        cluster.env.update(env_key)
        first = cluster.start_worker("wb2", "--engines", "null")
        cluster.env.pop("FFRTMP_API_KEY")
        eventually(lambda: "joined" in cluster.log_tail("wb2", 50), timeout=30, message="wb2 to join")
        cluster.kill(first)
        first.wait()
        squatter = cluster.start_worker("wb2", "--engines", "null", "--api-key", other["key"])
        assert squatter.wait(30) == 4, cluster.log_tail("wb2")
        assert "belongs to another API key" in cluster.log_tail("wb2")
        wrong_name = cluster.start_worker("cpu-1", "--engines", "null", "--api-key", gpu_only["key"])
        assert wrong_name.wait(30) == 4 and "gpu-*" in cluster.log_tail("cpu-1")

        again = cluster.start_worker("wb2", "--engines", "null", "--api-key", real["key"])
        def online() -> bool:
            nodes = json.loads(ffrtmp(cluster, "nodes", "list", "--json", key=admin["key"]).stdout)
            return any(n["name"] == "wb2" and n["status"] == "online" for n in nodes)

        eventually(online, timeout=30, message="the real wb2 back")
        assert ffrtmp(cluster, "keys", "api", "revoke", real["id"], connect=False).returncode == 0
        assert again.wait(30) == 4, "cut off at its next heartbeat"
        assert "revoked" in cluster.log_tail("wb2")


def test_a_rogue_cannot_adopt_a_pending_job_by_its_id(tmp_path: Path) -> None:
    """M2 (docs/design.md): a HELLO claiming another node's (or a never-run) attempt of a pending job."""
    with LocalCluster(tmp_path) as cluster:
        worker, admin = make_key(cluster, "--role", "worker"), make_key(cluster, "--role", "admin")
        cluster.start_master()
        submitted = ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "null", key=admin["key"])
        job_id = submitted.stdout.split()[0]
        rogue = DealerSocket(cluster.url, load_public_key(cluster.master_dir / "master.key"),
                             client_keypair(cluster.root / "config" / "client.key_secret"))
        try:
            rogue.send(encode(Kind.HELLO, {
                "name": "innocent-name", "fingerprint": "0" * 16, "version": "x", "slots": 1,
                "engines": ["ffmpeg"], "key": worker["key"],
                "running": [{"job": job_id, "attempt": 0}, {"job": job_id, "attempt": 1}]}))
            got: list[Kind] = []
            deadline = time.monotonic() + 15
            while Kind.WELCOME not in got and time.monotonic() < deadline:
                frame = rogue.recv(0.5)
                if frame is not None:
                    message = decode(frame)
                    got += [m.kind for m in (unbatch(message) if message.kind is Kind.BATCH else [message])]
            assert Kind.WELCOME in got
        finally:
            rogue.close()
        job = json.loads(ffrtmp(cluster, "jobs", "show", job_id, "--json", key=admin["key"]).stdout)
        assert job["status"] == "pending" and all("adopted" not in (h["reason"] or "") for h in job["history"])


# ---- M3, M4 --------------------------------------------------------------------------------------------


def test_listing_comes_in_pages_and_all_walks_them(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master()
        with cluster.client() as client:
            client.submit_many([{"scenario": "t", "engine": "null"}] * 2500)
            page = client.request("list", {"limit": 100_000})
            assert 0 < len(page["jobs"]) <= 1000 and page["next"], "a page, and a cursor for the rest"
            assert len({job["id"] for job in client.list(all=True)}) == 2500
            assert len(client.list(limit=1500)) == 1500
        listed = ffrtmp(cluster, "jobs", "list", "--all", "--json")
        assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2500


def test_oversized_jobs_are_refused_naming_the_field(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master()
        for option, value, field in (("--resolution", "8192x8192", "resolution"), ("--fps", "240", "fps"),
                                     ("--duration", "1d", "duration"), ("--bitrate", "500M", "bitrate")):
            done = ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "null", option, value)
            assert done.returncode == 2 and field in done.stderr and "--max-" in done.stderr, done.stderr
        assert json.loads(ffrtmp(cluster, "jobs", "list", "--json").stdout) == []
        cluster.stop()
        cluster.start_master(["--max-fps", "240"])
        assert ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "null", "--fps", "240").returncode == 0


# ---- Low -----------------------------------------------------------------------------------------------


def test_the_database_is_private_and_stream_keys_stay_out_of_the_master_log(tmp_path: Path, ffmpeg: str) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master()
        cluster.start_worker("w1", "--engines", "ffmpeg", "--allow-private-network")  # the push reaches 127.0.0.1
        cluster.wait_for_nodes(["w1"])
        port = free_port()  # nobody listens: the push fails
        done = ffrtmp(cluster, "jobs", "submit", "--scenario", "t", "--engine", "ffmpeg", "--resolution", "160x120",
                      "--duration", "1", "--max-retries", "0", "--output",
                      f"rtmp://127.0.0.1:{port}/live/acme-secret-streamkey", "--wait")
        assert done.returncode != 0
        def failure_logged() -> str | None:
            text = (cluster.logs / "master.log").read_text()
            return text if "failed for good" in text else None

        log = eventually(failure_logged, message="the failure in the master's log")
        assert "acme-secret-streamkey" not in log and "live/***" in log
        for name in ("master.db", "master.db-wal", "master.db-shm"):
            path = cluster.master_dir / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
