"""A real master whose data dir is a small tmpfs that fills up (F4, docs/design.md): it stays up, clients get a clear
"store full" error (exit 5), /health and the metrics say so, and it takes submits again once space is freed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffrtmp.errors import StoreUnavailable
from ffrtmp.local import LocalCluster
from tests.conftest import eventually
from tests.scrape import get, parse, value
from tests.test_store_open import fill, tmpfs

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]

BIG = {f"pad{i}": "x" * 250 for i in range(8)}
"""Labels that make each job take about 2 KiB, so a few chunks fill the disk."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # A 2 MiB reserve: the flood below reaches the disk's end inside a commit (SQLITE_FULL), not the reserve.
    with tmpfs(tmp_path / "cluster" / "master", size="24m"), \
            LocalCluster(tmp_path / "cluster", env={"FFRTMP_STORE_MIN_FREE": "2M"}) as local:
        local.start_master(metrics_port=0)
        yield local


def health(cluster: LocalCluster) -> tuple[int, str]:
    port = json.loads((cluster.master_dir / "master.json").read_text())["metrics_port"]
    status, body, _ = get(f"http://127.0.0.1:{port}/health")
    return status, body


def writable_metric(cluster: LocalCluster) -> float | None:
    port = json.loads((cluster.master_dir / "master.json").read_text())["metrics_port"]
    return value(parse(get(f"http://127.0.0.1:{port}/metrics")[1]), "ffrtmp_store_writable")


def test_a_full_disk_degrades_the_master_and_it_recovers_when_space_returns(cluster: LocalCluster) -> None:
    acknowledged: list[str] = []
    refusal = None
    with cluster.client(timeout=30) as client:
        for _ in range(60):  # 60 x 1,000 jobs of 2 KiB (one frame stays under 4 MiB): more than 24 MiB
            try:
                acknowledged += client.submit_many([{"scenario": "flood", "engine": "null", "labels": BIG}] * 1000)
            except StoreUnavailable as exc:
                refusal = str(exc)
                break
        assert refusal is not None, "the disk never filled"
        assert refusal.startswith(f"store full: {cluster.master_dir} has ") and "MiB free" in refusal
        assert cluster.master is not None and cluster.master.poll() is None  # still up
        status, body = health(cluster)
        assert status == 503 and "store full" in body
        assert writable_metric(cluster) == 0
        fill(cluster.master_dir)  # whatever room the rollback left is gone too
        cli = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--scenario", "x", "--engine",
                              "null", *cluster.connection_args()], capture_output=True, text=True, timeout=60,
                             env=cluster.env)
        assert cli.returncode == 5, cli.stderr
        assert "store full:" in cli.stderr and "Traceback" not in cli.stderr
        assert len(client.list(limit=100_000)) == len(acknowledged)  # reads still work
        (cluster.master_dir / "ballast").unlink()  # space returns: the ballast goes and the disk grows
        subprocess.run(["mount", "-o", "remount,size=64m", str(cluster.master_dir)], check=True)

        def accepted() -> list[str] | None:
            try:
                return client.submit_many([{"scenario": "after", "engine": "null"}] * 10)
            except StoreUnavailable:
                return None

        after = eventually(accepted, timeout=60, interval=0.5, message="the master to take submits again")
        assert len(after) == 10
        eventually(lambda: health(cluster)[0] == 200, timeout=30, message="/health to be 200 again")
        assert writable_metric(cluster) == 1
        stored = {job["id"] for job in client.list(limit=100_000)}
    assert cluster.master.poll() is None
    assert stored == set(acknowledged) | set(after)  # nothing acknowledged lost, nothing unacknowledged kept
