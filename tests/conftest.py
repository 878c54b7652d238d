"""Shared fixtures. Real parts (ffmpeg, sockets on 127.0.0.1) are used wherever they run here.

A missing ffmpeg skips the tests that need it on a developer machine, but fails them under CI=true, where
`.ci/run` installs it: CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.local import ClusterError, LocalCluster, wait_for
from ffrtmp.worker.tools import find_ffmpeg, find_gst_inspect, find_gstreamer
from tests.postgres import postgres_database, postgres_url  # noqa: F401 (fixtures, for every test file)
from tests.rtmp import find_nginx_rtmp, rtmp_server  # noqa: F401 (the fixture, for every test file)
from tests.s3server import bucket, s3_endpoint  # noqa: F401 (fixtures: moto's S3 server and a bucket)


def _require(tool: str | None, name: str) -> str:
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed")
    return tool


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """The path of a real ffmpeg binary."""
    return _require(find_ffmpeg(None), "ffmpeg")


@pytest.fixture(scope="session")
def ffprobe() -> str:
    return _require(shutil.which("ffprobe"), "ffprobe")


@pytest.fixture(scope="session")
def gst_launch() -> str:
    """The path of a real gst-launch-1.0 (gstreamer1.0-tools)."""
    return _require(find_gstreamer(), "gst-launch-1.0")


@pytest.fixture(scope="session")
def gst_inspect(gst_launch: str) -> str:
    return _require(find_gst_inspect(gst_launch), "gst-inspect-1.0")


@pytest.fixture(scope="session")
def nginx_rtmp() -> tuple[str, str]:
    """(nginx binary, path of its RTMP module): Debian's nginx with libnginx-mod-rtmp."""
    found = find_nginx_rtmp()
    _require(found[0] if found else None, "nginx with libnginx-mod-rtmp")
    assert found is not None
    return found


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches the user's real config, data or cache dirs, or inherits connection settings."""
    monkeypatch.setenv("FFRTMP_CONFIG_DIR", str(tmp_path / "_config"))
    monkeypatch.setenv("FFRTMP_DATA_DIR", str(tmp_path / "_data"))
    monkeypatch.setenv("FFRTMP_WORK_DIR", str(tmp_path / "_work"))
    for name in ("FFRTMP_MASTER", "FFRTMP_MASTER_KEY", "FFRTMP_API_KEY", "MASTER_API_KEY", "FFMPEG_RTMP_API_KEY",
                 "FFRTMP_TIMEOUT", "FFRTMP_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield


def cancel_unfinished(cluster: LocalCluster) -> None:
    """Cancel what a cluster still runs before it stops: a worker's SIGTERM drains (it lets its running jobs
    finish), so a long test job left running held every teardown to LocalCluster's 15 s limit."""
    with contextlib.suppress(Exception), cluster.client(timeout=5) as client:  # a master a test killed: nothing
        for job in client.list(limit=1000):
            if job["status"] in ("pending", "assigned", "running"):
                client.cancel(job["id"])


def eventually(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Wait for `condition()` to be truthy, with a deadline (never a bare sleep in a test)."""
    try:
        return wait_for(condition, timeout, message, interval)
    except ClusterError as exc:
        raise AssertionError(str(exc)) from None


def child_processes(name: str, matches: Callable[[list[str]], bool]) -> list[psutil.Process]:
    """This test process's live descendants called `name` whose argv `matches`.

    A child that exits (or is a zombie not yet reaped) between listing and reading is skipped, not an error.
    """
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == name and matches(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found
