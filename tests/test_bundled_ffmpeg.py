"""FFmpeg comes with the install: `--ffmpeg`/`FFRTMP_FFMPEG`, then PATH, then imageio-ffmpeg's binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.worker.capabilities import detect
from ffrtmp.worker.tools import BUNDLED, ffmpeg_version, locate_ffmpeg


@pytest.fixture(autouse=True)
def _fresh_lookup() -> Iterator[None]:
    """The lookup is cached per process; each test changes PATH or FFRTMP_FFMPEG."""
    locate_ffmpeg.cache_clear()
    yield
    locate_ffmpeg.cache_clear()


def path_without_ffmpeg(tmp_path: Path) -> str:
    """A PATH with the tools a worker may use, but no ffmpeg or ffprobe."""
    bin_dir = tmp_path / "bin-without-ffmpeg"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("nice",):
        source = Path("/usr/bin") / tool
        if source.exists() and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(source)
    return str(bin_dir)


def test_named_ffmpeg_that_is_not_there_is_not_silently_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    found = locate_ffmpeg("/nonexistent/ffmpeg")
    assert found.path is None and "'/nonexistent/ffmpeg' is not an executable" in found.source
    monkeypatch.setenv("FFRTMP_FFMPEG", "/nonexistent/ffmpeg")
    locate_ffmpeg.cache_clear()
    assert locate_ffmpeg(None).path is None
    missing = detect(["ffmpeg"], validate=False).missing["ffmpeg"]
    assert "/nonexistent/ffmpeg" in missing and "--ffmpeg" in missing


def test_without_ffmpeg_on_path_the_bundled_one_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FFRTMP_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", path_without_ffmpeg(tmp_path))
    found = locate_ffmpeg(None)
    assert found.path == imageio_ffmpeg.get_ffmpeg_exe() and found.source == BUNDLED and found.bundled
    capabilities = detect(["ffmpeg"], validate=False)
    assert capabilities.ffmpeg == found.path and capabilities.ffmpeg_source == BUNDLED


def test_an_ffmpeg_on_path_comes_before_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FFRTMP_FFMPEG", raising=False)
    bin_dir = Path(path_without_ffmpeg(tmp_path))
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", str(bin_dir))
    found = locate_ffmpeg(None)
    assert found.path == str(bin_dir / "ffmpeg") and found.source == "PATH" and not found.bundled


def test_the_version_is_read_from_ffmpeg_itself(tmp_path: Path) -> None:
    version = ffmpeg_version(imageio_ffmpeg.get_ffmpeg_exe())
    assert version is not None and any(ch.isdigit() for ch in version)
    not_ffmpeg = tmp_path / "not-ffmpeg"
    not_ffmpeg.write_text("#!/bin/sh\necho hello\n")
    not_ffmpeg.chmod(0o755)
    assert ffmpeg_version(str(not_ffmpeg)) is None


@pytest.mark.slow
def test_probe_says_which_ffmpeg_it_uses(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without_ffmpeg(tmp_path)}
    env.pop("FFRTMP_FFMPEG", None)
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--probe", "--json", "--engines", "ffmpeg",
                           "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=120,
                          env=env, check=True)
    report = json.loads(done.stdout)
    assert report["ffmpeg"] == imageio_ffmpeg.get_ffmpeg_exe() and report["ffmpeg_bundled"] is True
    assert report["ffmpeg_version"] == ffmpeg_version(report["ffmpeg"])
    usable = {e["name"] for e in report["encoders"] if e["available"]}
    assert {"libx264", "libx265", "libvpx-vp9"} <= usable, "the bundle has the demo's encoders"
    table = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--probe", "--engines", "ffmpeg",
                            "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=120,
                           env={**env, "COLUMNS": "200"}, check=True)
    assert f"ffmpeg: {report['ffmpeg']} (version {report['ffmpeg_version']}, bundled" in table.stdout


@pytest.mark.slow
def test_a_worker_with_no_ffmpeg_on_path_runs_h264_with_the_bundled_one(tmp_path: Path, ffprobe: str) -> None:
    env = {"PATH": path_without_ffmpeg(tmp_path), "FFRTMP_FFMPEG": ""}
    with LocalCluster(tmp_path / "cluster", env=env) as cluster:
        cluster.start_master()
        cluster.start_worker("bundled")
        cluster.wait_for_nodes(["bundled"])
        with cluster.client() as client:
            job_id = client.submit("bundled-h264", codec="h264", resolution="160x120", duration=1, engine="ffmpeg")
            job = client.wait(job_id, timeout=90)
            lines = [line["line"] for line in client.logs(job_id)["lines"]]
    assert job["status"] == "completed", job.get("error")
    assert any(line.startswith(f"$ {imageio_ffmpeg.get_ffmpeg_exe()} ") for line in lines), lines[:5]
    probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                            job["output"]], capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 160, 120)
