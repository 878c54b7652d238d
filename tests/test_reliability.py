"""Never lose a job, never record one twice: real processes killed with SIGKILL, stopped, restarted."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.worker.inputs import ensure_generated
from tests.conftest import eventually

pytestmark = pytest.mark.slow

FAST = ["--heartbeat-interval", "200ms", "--node-timeout", "2s", "--retry-backoff", "200ms"]
"""Master timing that keeps these tests short: a silent worker is dead after 2 s."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> str:
    """A 10 s 640x360 clip shared by the tests: with preset `slower` one transcode takes a few seconds."""
    return str(ensure_generated(ffmpeg, tmp_path_factory.mktemp("inputs"), "640x360", 30, 10.0))


@pytest.fixture
def cluster(tmp_path: Path, source: str) -> Iterator[LocalCluster]:
    # The workers read the shared clip: its dir is their input root.
    with LocalCluster(tmp_path / "cluster", master_args=FAST,
                      env={"FFRTMP_INPUT_ROOT": str(Path(source).parent)}) as local:
        local.start_master()
        yield local


def slow_job(source: str, **extra: Any) -> dict[str, Any]:
    return {"scenario": "slow", "engine": "ffmpeg", "input": source, "resolution": "640x360", "duration": 10,
            "codec": "h264", "preset": "slower", "bitrate": "1000k", **extra}


def completions(job: dict[str, Any]) -> int:
    return sum(1 for event in job["history"] if event["status"] == "completed")


def encoders_of(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if job_id in cmdline and "ffmpeg" in cmdline:
            found.append(proc)
    return found


def start_slow_job(client: Any, source: str) -> tuple[str, dict[str, Any]]:
    """Submit a slow job and wait until it runs; returns its id and the job as it runs."""
    job_id = client.submit_many([slow_job(source)])[0]
    job = eventually(lambda: (j := client.get(job_id))["status"] == "running" and j, timeout=30,
                     message="the job to run")
    return job_id, job


def gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def test_killed_worker_mid_job_the_job_completes_on_another_with_two_attempts(cluster: LocalCluster,
                                                                              source: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_for_nodes(["w1", "w2"])
    with cluster.client() as client:
        job_id, job = start_slow_job(client, source)
        first = job["node"]
        orphans = eventually(lambda: encoders_of(job_id), message="its ffmpeg process")
        cluster.kill(cluster.workers[first], signal.SIGKILL)
        final = client.wait(job_id, timeout=90)
    assert final["status"] == "completed" and final["attempts"] == 2
    assert final["node"] != first and completions(final) == 1
    assert [h["reason"] for h in final["history"] if h["status"] == "pending"][1].startswith("worker_lost")
    eventually(lambda: gone(orphans), timeout=10, message="the dead worker's ffmpeg to stop")


def test_killed_master_restarts_and_every_job_completes_exactly_once(cluster: LocalCluster, source: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_for_nodes(["w1", "w2"])
    with cluster.client() as client:
        ids = client.submit_many([slow_job(source), slow_job(source)] +
                                 [{"scenario": "quick", "engine": "null"}] * 5 + [slow_job(source)])
        eventually(lambda: sum(j["status"] == "running" for j in client.list(limit=20)) == 2, timeout=30,
                   message="two jobs running")
    assert cluster.master is not None
    cluster.kill(cluster.master, signal.SIGKILL)
    cluster.master.wait()
    cluster.start_master(port=cluster.port)
    with cluster.client() as client:
        jobs = [client.wait(job_id, timeout=120) for job_id in ids]
    assert [j["status"] for j in jobs] == ["completed"] * len(ids)
    assert all(completions(j) == 1 for j in jobs)
    adopted = [j for j in jobs[:2] if j["attempts"] == 1]
    assert adopted, "a worker that kept running its attempt through the restart is adopted, not rerun"


def test_a_worker_stopped_past_the_node_timeout_has_its_late_result_ignored(cluster: LocalCluster,
                                                                            source: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_for_nodes(["w1", "w2"])
    with cluster.client() as client:
        job_id, job = start_slow_job(client, source)
        frozen = cluster.workers[job["node"]]
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            eventually(lambda: client.get(job_id)["attempts"] == 2, timeout=15, message="the retry elsewhere")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        final = client.wait(job_id, timeout=90)
        eventually(lambda: client.node(job["node"])["status"] == "online", timeout=15,
                   message="the stopped worker to rejoin")
    assert final["status"] == "completed" and final["attempts"] == 2 and final["node"] != job["node"]
    assert completions(final) == 1


def test_a_second_live_worker_with_the_same_name_is_refused(cluster: LocalCluster) -> None:
    cluster.start_worker("twin")
    cluster.wait_for_nodes(["twin"])
    second = cluster.start_worker("twin-copy", "--name", "twin")
    assert second.wait(timeout=30) == 2
    assert "already connected" in cluster.log_tail("twin-copy")
    with cluster.client() as client:
        assert [n["name"] for n in client.nodes()] == ["twin"]


def test_a_restarted_worker_takes_over_its_name_at_once(cluster: LocalCluster) -> None:
    first = cluster.start_worker("phoenix")
    cluster.wait_for_nodes(["phoenix"])
    cluster.kill(first)
    first.wait()
    cluster.start_worker("phoenix")
    cluster.wait_for_nodes(["phoenix"], timeout=5)  # well before the 2 s node timeout would free the name twice
    with cluster.client() as client:
        assert [n["name"] for n in client.nodes()] == ["phoenix"]


@pytest.mark.parametrize("how", ["drain", "sigterm"])
def test_drain_lets_the_running_job_finish_then_the_worker_exits_0(cluster: LocalCluster, source: str,
                                                                   how: str) -> None:
    worker = cluster.start_worker("drainer")
    cluster.wait_for_nodes(["drainer"])
    with cluster.client() as client:
        job_id, queued = client.submit_many([slow_job(source), {"scenario": "later", "engine": "null"}])
        eventually(lambda: client.get(job_id)["status"] == "running", timeout=30, message="the job to run")
        if how == "drain":
            client.drain("drainer")
        else:
            worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert client.get(job_id)["status"] == "completed"
        assert client.get(queued)["status"] == "pending", "a draining worker takes no new job"
        assert client.node("drainer")["status"] == "offline"


def test_cancel_kills_the_ffmpeg_process_group(cluster: LocalCluster, source: str) -> None:
    cluster.start_worker("w1")
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        job_id = client.submit_many([slow_job(source)])[0]
        eventually(lambda: client.get(job_id)["status"] == "running", timeout=30, message="the job to run")
        processes = eventually(lambda: encoders_of(job_id), message="its ffmpeg process")
        done = subprocess.run([*cluster_cli(cluster), "jobs", "cancel", job_id[:12], *cluster.connection_args()],
                              capture_output=True, text=True, env=cluster.env, check=False, timeout=30)
        assert done.returncode == 0, done.stderr
        eventually(lambda: gone(processes), timeout=15, message="ffmpeg to be killed")
        job = client.get(job_id)
    assert job["status"] == "canceled" and job["history"][-1]["status"] == "canceled"


def cluster_cli(cluster: LocalCluster) -> list[str]:
    import sys

    return [sys.executable, "-m", "ffrtmp"]
