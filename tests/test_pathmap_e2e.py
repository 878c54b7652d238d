"""Shared storage without transfer, as real processes: a `--path-map` worker runs a job that names the storage as
the submitter mounts it; a worker that cannot see it is never given the job, which waits saying so.

The "NFS export" is a dir the sighted worker reads under its own `--input-root`; jobs name it by a path that
exists nowhere on this machine (the submitters' mount point), so only the map can make it readable. The blind
worker has a separate work dir and an input root of its own that holds nothing of the export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.worker.inputs import ensure_generated
from tests.conftest import eventually
from tests.test_cli_e2e import ffrtmp

pytestmark = pytest.mark.slow

TINY: dict[str, Any] = {"engine": "ffmpeg", "resolution": "160x120", "fps": 10, "duration": 1, "codec": "h264",
                        "preset": "ultrafast", "bitrate": "100k", "max_retries": 0}


@pytest.fixture
def storage(tmp_path: Path, ffmpeg: str) -> tuple[Path, Path]:
    """(the export as the sighted worker mounts it, holding in/clip.mp4; the path jobs name it by)."""
    export = tmp_path / "srv-nfs-media"
    (export / "in").mkdir(parents=True)
    shutil.copy(ensure_generated(ffmpeg, tmp_path / "gen", "160x120", 10, 1.0), export / "in" / "clip.mp4")
    return export, tmp_path / "mnt-media"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as local:
        local.start_master()
        yield local


def show(cluster: LocalCluster, job_id: str) -> dict[str, Any]:
    done = ffrtmp(cluster, "jobs", "show", job_id, "--json")
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_only_a_worker_that_sees_the_input_is_given_the_job(cluster: LocalCluster, storage: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    export, named = storage
    own = tmp_path / "blind-own"
    own.mkdir()
    cluster.start_worker("blind", "--input-root", str(own))
    cluster.wait_for_nodes(["blind"])
    with cluster.client(timeout=30) as client:
        first = client.submit("nfs", input=str(named / "in" / "clip.mp4"), **TINY)
        reason = f"no connected worker can see {named / 'in'} (add --input-root or --path-map)"

        def waiting_for_sight() -> dict[str, Any] | None:
            shown = show(cluster, first)
            return shown if shown["reason"] == reason else None

        waiting = eventually(waiting_for_sight, timeout=30, message="the job to wait for a worker that sees it")
        assert (waiting["status"], waiting["attempts"], waiting["node"]) == ("pending", 0, None), waiting

        cluster.start_worker("sighted", "--input-root", str(export), "--path-map", f"{named}={export}")
        cluster.wait_for_nodes(["sighted"])
        done = client.wait(first, timeout=90)
        assert (done["status"], done["node"]) == ("completed", "sighted"), done

        # Both connected, the blind one idle and as free: still every such job goes to the sighted one.
        more = [client.submit("nfs", input=str(named / "in" / "clip.mp4"), **TINY) for _ in range(3)]
        finished = [client.wait(job_id, timeout=120) for job_id in more]
    assert [(j["status"], j["node"]) for j in finished] == [("completed", "sighted")] * 3, finished
    assert Path(finished[0]["output"]).stat().st_size > 0


def test_a_map_to_outside_the_input_roots_stops_the_worker_at_start(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--input-root", str(tmp_path / "a"),
                           "--path-map", f"/mnt/media={tmp_path / 'b'}", "--no-tls"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "path-map: " in done.stderr and "is not under any --input-root" in done.stderr
    assert "Traceback" not in done.stderr


def test_gstreamer_reads_a_mapped_shared_storage_input(cluster: LocalCluster, storage: tuple[Path, Path],
                                                       gst_launch: str, ffprobe: str) -> None:
    export, named = storage
    cluster.start_worker("gst", "--engines", "gstreamer", "--input-root", str(export), "--path-map",
                         f"{named}={export}")
    cluster.wait_for_nodes(["gst"])
    with cluster.client(timeout=30) as client:
        job_id = client.submit("nfs-gst", input=str(named / "in" / "clip.mp4"), **{**TINY, "engine": "gstreamer"})
        done = client.wait(job_id, timeout=120)
    assert (done["status"], done["node"]) == ("completed", "gst"), done
    probed = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,width,height", "-of", "json", done["output"]],
                            capture_output=True, text=True, timeout=30, check=True)
    stream = json.loads(probed.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 160, 120)
