"""`--quality vmaf` jobs go only to workers whose FFmpeg has libvmaf; the others wait with a reason.

First through the coordinator with the metrics a HELLO reports, then end to end: a real worker whose
`--ffmpeg` hides libvmaf from `-filters` (a wrapper of the bundled FFmpeg) and one with the bundled FFmpeg."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ffrtmp.master.scheduler import NodeView, why_not
from ffrtmp.master.store.dispatch import needs_key, needs_of
from ffrtmp.worker.quality import measurable
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster, shared_capabilities, wait_for_workers
from tests.test_coordinator import Cluster
from tests.test_placement import CPU_ENCODERS, dispatched

VMAF_WAIT = "no connected worker has libvmaf for --quality vmaf"
TINY = {"resolution": "160x120", "fps": 10, "duration": 1, "bitrate": "100k"}


def test_the_needs_key_carries_vmaf_only() -> None:
    """Jobs without a placement-relevant quality keep the key they had before the field existed."""
    params = {"codec": "h264"}
    assert needs_key("ffmpeg", {**params, "quality": "basic"}, {}) == needs_key("ffmpeg", params, {})
    vmaf = needs_key("ffmpeg", {**params, "quality": "vmaf"}, {"zone": "a"})
    assert vmaf != needs_key("ffmpeg", params, {"zone": "a"})
    assert needs_of(vmaf) == {"engine": "ffmpeg", "params": {"codec": "h264", "quality": "vmaf"},
                              "labels": {"zone": "a"}}
    node = NodeView(name="n", slots=1, active=0, engines=frozenset({"ffmpeg"}),
                    codecs={"ffmpeg": frozenset({"h264"})}, quality=frozenset({"psnr", "ssim"}))
    assert why_not(needs_of(vmaf) | {"labels": {}}, node) == "libvmaf for --quality vmaf"
    assert why_not(needs_of(vmaf) | {"labels": {}}, dataclasses.replace(node, quality=frozenset({"vmaf"}))) is None


def test_vmaf_jobs_wait_for_a_worker_that_reports_vmaf(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"plain", "plain-1", slots=4, engines=("ffmpeg", "null"), encoders=CPU_ENCODERS,
                  quality=["psnr", "ssim", "bogus", 7])  # what a hostile HELLO adds is ignored
    vmaf = cluster.submit(engine="ffmpeg", codec="h264", quality="vmaf")
    basic = cluster.submit(engine="ffmpeg", codec="h264", quality="basic")
    assert dispatched(cluster, b"plain") == [basic]
    assert cluster.job(vmaf)["reason"] == VMAF_WAIT
    cluster.hello(b"vmaf", "vmaf-1", slots=1, engines=("ffmpeg", "null"), encoders=CPU_ENCODERS,
                  quality=["psnr", "ssim", "vmaf"])
    assert dispatched(cluster, b"vmaf") == [vmaf]


@pytest.fixture(scope="module")
def bundled() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path: str = imageio_ffmpeg.get_ffmpeg_exe()
    if "vmaf" not in measurable(path):
        pytest.skip("this bundled FFmpeg has no working libvmaf")
    return path


def without_libvmaf(tmp_path: Path, ffmpeg: str) -> str:
    """An `--ffmpeg` that is `ffmpeg` in all but listing libvmaf among its filters."""
    wrapper = tmp_path / "ffmpeg-no-vmaf"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do\n  if [ "$a" = -filters ]; then\n'
                       f'    "{ffmpeg}" "$@" | grep -v libvmaf; exit 0\n  fi\ndone\nexec "{ffmpeg}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


@pytest.mark.slow
def test_a_vmaf_job_waits_while_no_worker_has_libvmaf_then_runs_where_one_does(tmp_path: Path, bundled: str) -> None:
    hidden = without_libvmaf(tmp_path, bundled)
    assert set(measurable(hidden)) == {"psnr", "ssim"}
    shared = shared_capabilities()
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("plain", capabilities=dataclasses.replace(shared, ffmpeg=hidden,
                                                                     quality=measurable(hidden)))
        wait_for_workers(cluster, "plain")
        with cluster.client() as client:
            vmaf = client.submit("tiny", codec="h264", engine="ffmpeg", quality="vmaf", **TINY)
            basic = client.submit("tiny", codec="h264", engine="ffmpeg", **TINY)
            done = client.wait(basic, timeout=60)
            assert done["status"] == "completed" and done["metrics"]["psnr_db"] > 20, done
            eventually(lambda: client.get(vmaf)["reason"] == VMAF_WAIT, timeout=20, message="the vmaf wait reason")
            assert client.get(vmaf)["status"] == "pending"
            cluster.add_worker("vmaf", capabilities=dataclasses.replace(shared, ffmpeg=bundled,
                                                                        quality=measurable(bundled)),
                               watts_per_core=20.0)
            job = client.wait(vmaf, timeout=60)
        assert job["status"] == "completed", job
        assert job["node"] == "vmaf"
        assert 0 < job["metrics"]["vmaf"] <= 100 and job["metrics"]["quality"] == "vmaf"
        metrics = job["metrics"]
        if metrics["energy_source"] == "estimated":  # the worker's --watts-per-core reached its runner
            assert metrics["energy_joules"] == pytest.approx(metrics["cpu_seconds"] * 20.0, abs=1e-3)


@pytest.mark.slow
def test_worker_probe_lists_the_quality_metrics_of_its_ffmpeg(tmp_path: Path, bundled: str) -> None:
    def probe(ffmpeg: str) -> list[str]:
        done = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--probe", "--json", "--engines", "ffmpeg",
                               "--ffmpeg", ffmpeg, "--work-dir", str(tmp_path / "work")], capture_output=True,
                              text=True, timeout=120, check=True)
        metrics: list[str] = json.loads(done.stdout)["quality_metrics"]
        return metrics

    assert probe(bundled) == ["psnr", "ssim", "vmaf"]
    assert probe(without_libvmaf(tmp_path, bundled)) == ["psnr", "ssim"]
