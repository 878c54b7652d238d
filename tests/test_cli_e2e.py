"""The commands a user types, as real processes: `ffrtmp master`, `ffrtmp worker`, `ffrtmp jobs …`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def ffrtmp(cluster: LocalCluster, *args: str, timeout: float = 60, conn: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ffrtmp", *args, *(cluster.connection_args() if conn else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**cluster.env, **(env or {})},
                          cwd=cluster.root, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("e2e")
    with LocalCluster(root) as local:
        local.start_master()
        local.start_worker("e2e-worker", "--input-root", str(root))
        local.wait_for_nodes(["e2e-worker"])
        yield local


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "--help"], capture_output=True, text=True, check=True)
    for command in ("master", "worker", "demo", "jobs", "nodes", "keys", "scenarios"):
        assert command in done.stdout


def test_submit_wait_runs_a_real_transcode_and_the_views_show_it(cluster: LocalCluster, ffprobe: str) -> None:
    done = ffrtmp(cluster, "jobs", "submit", "--scenario", "test1", "--bitrate", "2000k", "--priority", "high",
                  "--queue", "live", "--resolution", "320x180", "--duration", "1", "--wait")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    show = ffrtmp(cluster, "jobs", "show", job_id[:10], "--json")
    job = json.loads(show.stdout)
    assert job["status"] == "completed" and job["queue"] == "live" and job["priority"] == "high"
    assert job["params"]["bitrate"] == "2000k" and job["params"]["resolution"] == "320x180"
    for key in ("id", "status", "scenario", "engine", "params", "attempts", "max_retries", "node", "progress",
                "created_at", "started_at", "finished_at", "error", "output", "metrics", "history"):
        assert key in job
    assert job["created_at"].endswith("Z") and job["node"] == "e2e-worker"
    probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                            job["output"]], capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 180)
    listing = ffrtmp(cluster, "jobs", "list")
    assert listing.returncode == 0 and job_id[:8] in listing.stdout and "completed" in listing.stdout
    assert "\x1b[" not in listing.stdout, "no colour codes when piped"
    listed = json.loads(ffrtmp(cluster, "jobs", "list", "--json", "--status", "completed").stdout)
    assert job_id in [j["id"] for j in listed]
    logs = ffrtmp(cluster, "jobs", "logs", job_id)
    assert logs.returncode == 0 and "$ " in logs.stdout
    assert "libx264" in logs.stdout or "x264enc" in logs.stdout, "a live job: FFmpeg, or GStreamer where installed"
    human = ffrtmp(cluster, "jobs", "show", job_id)
    assert "history" in human.stdout and "completed" in human.stdout
    nodes = ffrtmp(cluster, "nodes", "list")
    assert "e2e-worker" in nodes.stdout and "online" in nodes.stdout
    node = json.loads(ffrtmp(cluster, "nodes", "show", "e2e-worker", "--json").stdout)
    assert node["encoders"]["libx264"]["available"] is True


def test_submit_from_jsonl_and_python_api_agree(cluster: LocalCluster) -> None:
    path = cluster.root / "jobs.jsonl"
    path.write_text("\n".join(json.dumps({"scenario": f"batch-{i}", "engine": "null"}) for i in range(5)) + "\n")
    done = ffrtmp(cluster, "jobs", "submit", "--from", str(path), "--queue", "batch", "--json")
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)["ids"]
    assert len(ids) == 5
    with cluster.client() as client:
        jobs = [client.wait(job_id, timeout=20) for job_id in ids]
    assert {(j["status"], j["queue"]) for j in jobs} == {("completed", "batch")}


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--bitrate", "abc", "bitrate"), ("--resolution", "0x0", "resolution"), ("--fps", "-1", "fps"),
    ("--queue", "urgent", "queue"), ("--duration", "1e9", "duration"), ("--output", "/etc/passwd.mp4", "output"),
    ("--output", "../../escape.mp4", "output"),
])
def test_invalid_submit_exits_2_naming_the_field_and_stores_nothing(cluster: LocalCluster, option: str, value: str,
                                                                     field: str) -> None:
    with cluster.client() as client:
        before = sum(client.stats()["jobs"].values())
    done = ffrtmp(cluster, "jobs", "submit", "--scenario", "bad", option, value)
    assert done.returncode == 2
    assert field in done.stderr
    with cluster.client() as client:
        assert sum(client.stats()["jobs"].values()) == before


def test_exit_codes_for_not_found_and_failed_jobs(cluster: LocalCluster) -> None:
    assert ffrtmp(cluster, "jobs", "show", "0123456789abcdef").returncode == 6
    assert ffrtmp(cluster, "nodes", "show", "nobody").returncode == 6
    done = ffrtmp(cluster, "jobs", "submit", "--scenario", "missing", "--input",
                  str(cluster.root / "nonexistent" / "in.mp4"),
                  "--resolution", "160x120", "--duration", "1", "--wait")
    assert done.returncode == 1
    assert "does not exist" in done.stderr


def test_nodes_forget_drops_an_offline_node_and_refuses_a_connected_one(cluster: LocalCluster) -> None:
    refused = ffrtmp(cluster, "nodes", "forget", "e2e-worker")
    assert refused.returncode == 2 and "drain" in refused.stderr
    assert ffrtmp(cluster, "nodes", "forget", "nobody").returncode == 6
    leaver = cluster.start_worker("e2e-leaver", "--engines", "null")
    cluster.wait_for_nodes(["e2e-worker", "e2e-leaver"])
    leaver.send_signal(signal.SIGTERM)  # drains, says BYE: offline at once
    assert leaver.wait(30) == 0

    def offline() -> bool:
        nodes = json.loads(ffrtmp(cluster, "nodes", "list", "--json").stdout)
        return any(n["name"] == "e2e-leaver" and n["status"] == "offline" for n in nodes)

    wait_for(offline, 30, "the leaver to be offline")
    done = ffrtmp(cluster, "nodes", "forget", "e2e-leaver")
    assert done.returncode == 0 and "e2e-leaver forgotten" in done.stdout
    names = [n["name"] for n in json.loads(ffrtmp(cluster, "nodes", "list", "--json").stdout)]
    assert names == ["e2e-worker"]


def test_wrong_master_key_exits_3_within_the_timeout(cluster: LocalCluster) -> None:
    started = time.monotonic()
    done = ffrtmp(cluster, "jobs", "list", "--master", cluster.url, "--master-key",
                  "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "--timeout", "3", conn=False)
    assert done.returncode == 3
    assert time.monotonic() - started < 8
    assert cluster.url in done.stderr and "master-key" in done.stderr


def test_no_master_exits_3_with_the_address(cluster: LocalCluster) -> None:
    done = ffrtmp(cluster, "jobs", "list", "--master", "tcp://127.0.0.1:1", "--master-key",
                  str(cluster.master_dir / "master.key"), "--timeout", "1", conn=False)
    assert done.returncode == 3 and "tcp://127.0.0.1:1" in done.stderr


def test_zero_config_on_one_machine_finds_the_master_key(cluster: LocalCluster) -> None:
    """FFRTMP_DATA_DIR points at the master's data dir, as the default does on a single machine."""
    done = ffrtmp(cluster, "nodes", "list", "--json", conn=False,
                  env={"FFRTMP_MASTER": cluster.url, "FFRTMP_DATA_DIR": str(cluster.master_dir)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["name"] == "e2e-worker"


def test_keys_generate_writes_a_private_secret(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "keys", "generate", "--name", "edge", "--out",
                           str(tmp_path), "--json"], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert os.stat(report["secret"]).st_mode & 0o777 == 0o600
    assert len(report["public_key"]) == 40
    assert report["public_key"] in Path(report["public"]).read_text()
    assert "secret-key" not in Path(report["public"]).read_text()


def test_scenarios_are_listed() -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "scenarios", "--json"], capture_output=True, text=True,
                          check=True)
    names = {s["name"] for s in json.loads(done.stdout)}
    assert {"test1", "720p30-h264", "1080p30-h265", "480p30-vp9", "4k60-h264"} <= names


def test_api_key_and_cross_machine_keys(tmp_path: Path) -> None:
    """Across machines: keys made with `keys generate`, the master started with --key/--cert and an API key."""
    keys = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "ffrtmp", "keys", "generate", "--name", "prod", "--out", str(keys)],
                   check=True, capture_output=True)
    with LocalCluster(tmp_path / "c", master_args=["--key", str(keys / "prod.key_secret"), "--cert",
                                                   str(keys / "prod.key"), "--api-key", "s3cret"]) as local:
        local.start_master()
        local.start_worker("edge", "--api-key", "s3cret", "--master-key", str(keys / "prod.key"))
        conn = ["--master", local.url, "--master-key", str(keys / "prod.key")]
        denied = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "list", *conn], capture_output=True,
                                text=True, env=local.env, check=False)
        assert denied.returncode == 4 and "API key" in denied.stderr
        done = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--scenario", "x", "--engine", "null",
                               "--wait", "--api-key", "s3cret", *conn], capture_output=True, text=True, env=local.env,
                              check=False, timeout=60)
        assert done.returncode == 0, done.stderr + local.log_tail("edge")


def test_demo_runs_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "demo"], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "FFRTMP_CONFIG_DIR": str(tmp_path / "cfg")}, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "summary: 6/6 completed" in done.stdout
