"""Master and workers as threads of this process over real CURVE sockets, running real FFmpeg jobs."""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.conftest import eventually
from tests.inprocess import inprocess_cluster, wait_for_workers

TINY = {"resolution": "160x120", "fps": 10, "duration": 1, "bitrate": "200k"}


def test_null_jobs_flow_through_submit_many_and_complete_once(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1", slots=4)
        cluster.add_worker("w2", slots=4)
        wait_for_workers(cluster, "w1", "w2")
        with cluster.client() as client:
            ids = client.submit_many([{"scenario": "dry", "engine": "null"}] * 300)
            assert len(set(ids)) == 300

            def all_done() -> bool:
                return client.stats()["jobs"]["completed"] == 300

            eventually(all_done, timeout=30, message="300 null jobs to complete")
            jobs = client.list(limit=300)
        assert {job["status"] for job in jobs} == {"completed"}
        assert {job["attempts"] for job in jobs} == {1}
        assert {job["node"] for job in jobs} == {"w1", "w2"}, "both workers take work"


def test_a_real_ffmpeg_job_runs_end_to_end_with_progress_logs_and_metrics(tmp_path: Path, ffmpeg: str) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1")
        with cluster.client() as client:
            job_id = client.submit("tiny", codec="h264", **TINY)
            seen: list[str] = []
            job = client.wait(job_id, timeout=60, on_update=lambda j: seen.append(j["status"]))
            logs = client.logs(job_id)
        assert job["status"] == "completed", job
        assert job["metrics"]["frames"] == 10 and job["metrics"]["encoder"] == "libx264"
        assert job["output"].endswith(f"{job_id}.mp4") and Path(job["output"]).stat().st_size > 0
        assert [h["status"] for h in job["history"]] == ["pending", "assigned", "running", "completed"]
        lines = [line["line"] for line in logs["lines"]]
        assert lines[0].startswith("preparing test source") and any(line.startswith("$ ") for line in lines)
        assert [line["seq"] for line in logs["lines"]] == sorted(line["seq"] for line in logs["lines"])


def test_cancel_stops_the_running_ffmpeg_process(tmp_path: Path, ffmpeg: str) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1")
        with cluster.client() as client:
            job_id = client.submit("long", codec="h264", resolution="640x360", fps=30, duration=600, bitrate="500k")

            def ffmpeg_encoding() -> list[psutil.Process]:
                return [p for p in psutil.process_iter(["cmdline"])
                        if job_id in " ".join(p.info["cmdline"] or []) and "ffmpeg" in " ".join(p.info["cmdline"])]

            eventually(lambda: client.get(job_id)["status"] == "running", timeout=60, message="the job to run")
            processes = eventually(ffmpeg_encoding, timeout=30, message="the ffmpeg process")
            client.cancel(job_id)
            eventually(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes),
                       timeout=15, message="ffmpeg to be gone")
            job = client.get(job_id)
        assert job["status"] == "canceled"


def test_a_burst_worker_exits_when_no_work_is_left(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        with cluster.client() as client:
            client.submit_many([{"scenario": "dry", "engine": "null"}] * 5)
        agent = cluster.add_worker("burst", burst=True, slots=2)
        thread = cluster.agents[-1][1]
        eventually(lambda: not thread.is_alive(), timeout=20, message="the burst worker to exit")
        assert agent.completed == 5
