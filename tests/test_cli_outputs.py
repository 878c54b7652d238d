"""F13 as a user types it: `jobs submit --output /abs` and `--from` reach a master that has --output-root."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster
from tests.test_cli_e2e import ffrtmp

pytestmark = pytest.mark.slow


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    return tmp_path / "exports"


@pytest.fixture
def cluster(tmp_path: Path, exports: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as local:
        local.start_master(["--output-root", str(exports)])
        yield local


def test_an_absolute_output_under_the_masters_root_is_accepted(cluster: LocalCluster, exports: Path) -> None:
    done = ffrtmp(cluster, "jobs", "submit", "--scenario", "abs", "--engine", "null", "--output",
                  str(exports / "x.mp4"), "--json")
    assert done.returncode == 0, done.stderr
    lines = cluster.root / "jobs.jsonl"
    lines.write_text(json.dumps({"scenario": "abs", "engine": "null", "output": str(exports / "y.mp4")}) + "\n")
    done = ffrtmp(cluster, "jobs", "submit", "--from", str(lines), "--json")
    assert done.returncode == 0, done.stderr


def test_the_master_still_refuses_one_outside_its_roots(cluster: LocalCluster, tmp_path: Path) -> None:
    done = ffrtmp(cluster, "jobs", "submit", "--scenario", "abs", "--engine", "null", "--output",
                  str(tmp_path / "elsewhere" / "x.mp4"))
    assert done.returncode == 2 and "output" in done.stderr and "--output-root" in done.stderr
