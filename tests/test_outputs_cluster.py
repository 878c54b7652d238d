"""Outputs end to end (master and worker threads over real sockets, real FFmpeg on tiny inputs)."""

from __future__ import annotations

from pathlib import Path

from tests.inprocess import inprocess_cluster, wait_for_workers

TINY = {"resolution": "160x120", "fps": 10, "duration": 1, "bitrate": "200k", "codec": "h264", "engine": "ffmpeg"}


def test_a_completed_jobs_output_is_published_in_its_own_directory(tmp_path: Path, ffmpeg: str) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1")
        with cluster.client() as client:
            first = client.submit("tiny", **TINY)
            named = client.submit("tiny", output="clips/a.mp4", **TINY)
            jobs = [client.wait(job_id, timeout=60) for job_id in (first, named)]
    own = (tmp_path / "work" / "w1" / "outputs" / "default").resolve()
    assert [job["status"] for job in jobs] == ["completed", "completed"], jobs
    assert jobs[0]["output"] == str(own / first / f"{first}.mp4")
    assert jobs[1]["output"] == str(own / named / "clips" / "a.mp4")
    for job in jobs:
        assert Path(job["output"]).stat().st_size == job["metrics"]["output_bytes"] > 0
    left = sorted(p.name for p in own.rglob("*") if p.is_file())
    assert left == sorted(["a.mp4", f"{first}.mp4"]), "no partial file is left behind"


def test_client_submit_of_an_absolute_output_is_left_to_the_master(tmp_path: Path, ffmpeg: str) -> None:
    """F13: the master has --output-root, so `Client.submit(output=/abs)` is accepted and runs."""
    exports = tmp_path / "exports"
    exports.mkdir()
    with inprocess_cluster(tmp_path, output_roots=(str(exports),)) as cluster:
        cluster.add_worker("w1", output_roots=(exports,))
        wait_for_workers(cluster, "w1")
        with cluster.client() as client:
            job_id = client.submit("abs", output=str(exports / "day1" / "x.mp4"), **TINY)
            job = client.wait(job_id, timeout=60)
    assert job["status"] == "completed", job
    assert job["output"] == str((exports / "day1" / "x.mp4").resolve())
    assert [p.name for p in (exports / "day1").iterdir()] == ["x.mp4"]
