"""F1 with real processes: a zombie twin resumed after SIGSTOP must not take the job's output with it.

The worker and its FFmpeg are stopped mid-job; the master gives the job away; a replacement worker with the
same name and work dir runs attempt 2; the zombie resumes, is refused, and stops its attempt. It used to
unlink the shared output path, so the job ended `completed` naming a file that did not exist.
"""

from __future__ import annotations

import contextlib
import json
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


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> str:
    return str(ensure_generated(ffmpeg, tmp_path_factory.mktemp("inputs"), "640x360", 30, 10.0))


@pytest.fixture
def cluster(tmp_path: Path, source: str) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", master_args=FAST,
                      env={"FFRTMP_INPUT_ROOT": str(Path(source).parent)}) as local:  # workers may read it
        local.start_master()
        yield local


def encoders_of(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "ffmpeg" and any(job_id in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_resumed_zombie_twin_leaves_the_completed_output_in_place(cluster: LocalCluster, source: str,
                                                                    ffprobe: str) -> None:
    zombie = cluster.start_worker("twin")
    cluster.wait_for_nodes(["twin"])
    stopped: list[psutil.Process] = []
    try:
        with cluster.client() as client:
            job_id = client.submit_many([{"scenario": "twin", "engine": "ffmpeg", "input": source,
                                          "resolution": "640x360", "duration": 10, "codec": "h264",
                                          "preset": "slower", "bitrate": "1000k"}])[0]
            stopped = eventually(lambda: encoders_of(job_id), timeout=30, message="attempt 1's ffmpeg")
            os.kill(zombie.pid, signal.SIGSTOP)
            for proc in stopped:  # its encode must still be running when the zombie wakes up
                proc.suspend()
            eventually(lambda: client.node("twin")["status"] == "offline", timeout=15,
                       message="the master to give up on the stopped worker")
            replacement = cluster.start_worker("twin")  # same name, same work dir
            eventually(lambda: (j := client.get(job_id))["attempts"] == 2 and (
                j["status"] == "completed" or (j.get("metrics") or {}).get("frames", 0) > 0), timeout=60,
                message="attempt 2 to encode on the replacement")
            for proc in stopped:
                proc.resume()
            os.kill(zombie.pid, signal.SIGCONT)
            assert zombie.wait(timeout=30) == 2, "the zombie is refused: its name is taken"
            final = client.wait(job_id, timeout=120)
        assert replacement.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(zombie.pid, signal.SIGCONT)
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()
        if zombie.poll() is None:
            zombie.kill()
    assert final["status"] == "completed" and final["attempts"] == 2, final
    output = Path(final["output"])
    assert output.is_file(), f"the completed job names {output}, which must exist"
    assert output.stat().st_size == final["metrics"]["output_bytes"]
    probed = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "json",
                             str(output)], capture_output=True, text=True, check=True, timeout=30)
    duration: Any = json.loads(probed.stdout)["format"]["duration"]
    assert float(duration) == pytest.approx(10, abs=0.5)
    assert [p.name for p in output.parent.iterdir()] == [output.name], "the zombie's partial is gone too"
