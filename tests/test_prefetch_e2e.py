"""Prefetch with real processes: a worker holding a second real FFmpeg job while its one slot runs the first,
then killed (the held job is re-dispatched like the running one), or drained (the held job comes back at once)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster
from tests.conftest import eventually
from tests.test_reliability import FAST, encoders_of, slow_job, source  # noqa: F401 (source: a fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path, source: str) -> Iterator[LocalCluster]:  # noqa: F811
    with LocalCluster(tmp_path / "cluster", master_args=FAST,
                      env={"FFRTMP_INPUT_ROOT": str(Path(source).parent)}) as local:  # workers may read it
        local.start_master()
        yield local


def hold_two(cluster: LocalCluster, source: str) -> tuple[str, str]:  # noqa: F811
    """w1 (one slot, the default prefetch of 1) runs one slow job and holds the other; returns (running, held)."""
    cluster.start_worker("w1", "--drain-timeout", "60")
    cluster.wait_for_nodes(["w1"])
    with cluster.client() as client:
        first, second = client.submit_many([slow_job(source), slow_job(source)])
        eventually(lambda: client.get(first)["status"] == "running", timeout=30, message="the first to run")
        held = client.get(second)
        assert held["status"] == "assigned" and held["node"] == "w1", held
        node = client.node("w1")
        assert (node["running"], node["queued"]) == (1, 1), node
        assert not encoders_of(second), "the held job has no FFmpeg yet"
    return first, second


def test_a_killed_worker_holding_a_prefetched_job_loses_both_jobs_to_another(cluster: LocalCluster,
                                                                            source: str) -> None:  # noqa: F811
    first, second = hold_two(cluster, source)
    cluster.kill(cluster.workers["w1"], signal.SIGKILL)
    cluster.start_worker("w2")
    with cluster.client() as client:
        for job_id in (first, second):
            final = client.wait(job_id, timeout=120)
            assert final["status"] == "completed" and final["node"] == "w2" and final["attempts"] == 2, final


def test_a_drain_hands_the_prefetched_job_back_at_once_while_the_running_one_finishes(cluster: LocalCluster,
                                                                                     source: str) -> None:  # noqa: F811
    first, second = hold_two(cluster, source)
    began = time.monotonic()
    cluster.workers["w1"].send_signal(signal.SIGTERM)
    with cluster.client() as client:
        eventually(lambda: client.get(second)["status"] == "pending", timeout=10,
                   message="the held job to come back")
        assert time.monotonic() - began < 10, "handed back at once, not held through the 60 s drain"
        assert client.get(first)["status"] == "running", "the running one finishes its drain"
        cluster.start_worker("w2")
        held = client.wait(second, timeout=120)
        assert held["status"] == "completed" and held["node"] == "w2" and held["attempts"] == 2, held
        assert client.wait(first, timeout=120)["node"] == "w1"
        assert cluster.workers["w1"].wait(timeout=30) == 0



def test_a_held_job_moves_to_a_worker_that_frees_a_slot_while_the_long_one_runs(cluster: LocalCluster,
                                                                               source: str) -> None:  # noqa: F811
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.wait_for_nodes(["w1", "w2"])
    with cluster.client() as client:
        first, second = client.submit_many([slow_job(source), slow_job(source)])
        eventually(lambda: {client.get(j)["status"] for j in (first, second)} == {"running"}, timeout=30,
                   message="one job to run on each worker")
        third = client.submit_many([slow_job(source)])[0]
        eventually(lambda: client.get(third)["status"] == "assigned", timeout=10, message="the third to be held")
        holder = client.get(third)["node"]
        other, beside = next((j, client.get(j)["node"]) for j in (first, second) if client.get(j)["node"] != holder)
        long = first if other == second else second
        client.cancel(other)  # the other worker is idle now, while the holder's long job runs on
        eventually(lambda: client.get(third)["node"] == beside, timeout=30,
                   message="the master to recall the held job for the idle worker")
        assert client.get(long)["status"] == "running", "it moved while the long job ran, not after it"
        moved = client.wait(third, timeout=120)
        assert moved["status"] == "completed" and moved["node"] == beside, moved
        assert client.wait(long, timeout=120)["status"] == "completed"
    assert "recalled" in cluster.log_tail("master")
