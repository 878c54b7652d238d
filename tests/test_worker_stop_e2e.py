"""Stopping a worker and losing its master, with real processes: a master stopped first, a frozen master,
a short master restart, a second SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.worker.runner import KILL_GRACE
from tests.conftest import cancel_unfinished, eventually
from tests.test_reliability import encoders_of, gone, slow_job, source, start_slow_job  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

DRAIN, DELIVER = 3.0, 2.0
STOP_ARGS = ["--drain-timeout", str(DRAIN), "--deliver-timeout", str(DELIVER)]


@pytest.fixture
def cluster(tmp_path: Path, source: str) -> Iterator[LocalCluster]:  # noqa: F811
    # A node timeout long enough for a master restart on a busy machine, short enough for a test.
    with LocalCluster(tmp_path / "cluster", master_args=["--heartbeat-interval", "200ms", "--node-timeout", "4s",
                                                         "--retry-backoff", "200ms"],
                      env={"FFRTMP_INPUT_ROOT": str(Path(source).parent)}) as local:  # workers may read it
        local.start_master()
        yield local
        cancel_unfinished(local)


def exit_within(proc: object, seconds: float) -> tuple[int, float]:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    began = time.monotonic()
    code = proc.wait(timeout=seconds)
    return code, time.monotonic() - began


def test_sigterm_with_the_master_gone_exits_in_bounded_time_and_a_restart_reports_the_result(
        cluster: LocalCluster, source: str) -> None:  # noqa: F811
    worker = cluster.start_worker("w1", *STOP_ARGS)
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        job_id, _ = start_slow_job(client, source)
    encoders = eventually(lambda: encoders_of(job_id), message="its ffmpeg")
    assert cluster.master is not None
    cluster.kill(cluster.master, signal.SIGTERM)
    cluster.master.wait(timeout=15)
    worker.send_signal(signal.SIGTERM)
    code, took = exit_within(worker, DRAIN + KILL_GRACE + DELIVER + 10)
    log = cluster.log_tail("w1", 40)
    assert code == 3, log
    assert took <= DRAIN + KILL_GRACE + DELIVER + 3, f"took {took:.1f}s"
    assert f"job {job_id} attempt 1 failed" in log and "not acknowledged" in log, log
    assert gone(encoders)
    spooled = cluster.root / "work" / "w1" / "undelivered" / "w1"
    assert [p.name for p in spooled.iterdir()] == [f"{job_id}.1.json"]
    cluster.start_master(port=cluster.port)
    cluster.start_worker("w1", *STOP_ARGS)
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        eventually(lambda: not any(spooled.iterdir()), timeout=20, message="the kept result to be acknowledged")
        job = client.get(job_id)
    # Only the worker's own RESULT says why it stopped the attempt (the drain or the lease, whichever came first).
    reasons = " ".join(str(h.get("reason")) for h in job["history"] if h.get("attempt") == 1)
    assert "worker shutting down" in reasons or "worker lost its master" in reasons, job["history"]


def test_a_second_sigterm_stops_the_worker_at_once(cluster: LocalCluster, source: str) -> None:  # noqa: F811
    worker = cluster.start_worker("w1", "--drain-timeout", "60")
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        job_id, _ = start_slow_job(client, source)
    encoders = eventually(lambda: encoders_of(job_id), message="its ffmpeg")
    worker.send_signal(signal.SIGTERM)
    eventually(lambda: "draining" in cluster.log_tail("w1"), message="the drain to begin")
    worker.send_signal(signal.SIGTERM)
    code, took = exit_within(worker, 15)
    assert took < 4, f"a second SIGTERM took {took:.1f}s"
    assert code in (0, 3), cluster.log_tail("w1")
    eventually(lambda: gone(encoders), timeout=3, message="its ffmpeg to be gone")


def test_a_frozen_master_past_the_node_timeout_makes_the_worker_stop_its_ffmpeg(cluster: LocalCluster,
                                                                                source: str) -> None:  # noqa: F811
    cluster.start_worker("w1")
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        # 1080p at preset slower: the encode outlasts the freeze on an idle machine too, so only the lease ends it.
        job_id = client.submit_many([slow_job(source, resolution="1920x1080")])[0]
        eventually(lambda: client.get(job_id)["status"] == "running", timeout=30, message="the job to run")
    encoders = eventually(lambda: encoders_of(job_id), message="its ffmpeg")
    assert cluster.master is not None
    frozen_at = time.monotonic()
    os.kill(cluster.master.pid, signal.SIGSTOP)
    try:
        eventually(lambda: gone(encoders), timeout=4 + KILL_GRACE + 3, message="the worker to stop its ffmpeg")
        stopped_after = time.monotonic() - frozen_at
    finally:
        os.kill(cluster.master.pid, signal.SIGCONT)
    # The lease counts from the master's last word, which a loaded master may have sent a while before the
    # freeze: stopping a little early is the safe side (the master gives the job away only later).
    assert stopped_after >= 2.5, f"stopped after {stopped_after:.1f}s: well before the node timeout"
    assert "worker lost its master" in cluster.log_tail("w1", 40)
    with cluster.client() as client:
        eventually(lambda: client.get(job_id)["attempts"] == 2, timeout=20, message="the job to move on")


def test_a_short_master_restart_keeps_the_running_attempt(cluster: LocalCluster, source: str) -> None:  # noqa: F811
    cluster.start_worker("w1")
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        job_id, _ = start_slow_job(client, source)
    encoders = eventually(lambda: encoders_of(job_id), message="its ffmpeg")
    assert cluster.master is not None
    cluster.kill(cluster.master, signal.SIGKILL)
    cluster.master.wait()
    cluster.start_master(port=cluster.port)
    with cluster.client() as client:
        final = client.wait(job_id, timeout=120)
    assert final["status"] == "completed" and final["attempts"] == 1, final["history"]
    assert "worker lost its master" not in cluster.log_tail("w1", 60)
    assert gone(encoders)
