"""The master's side of jobs and their files (docs/files.md, "Jobs and their files"), with scripted peers."""

from __future__ import annotations

from pathlib import Path

from ffrtmp.protocol import Kind
from tests.test_coordinator import T0, Cluster

SHA_IN, SHA_OUT = "1" * 64, "2" * 64
IN = {"sha256": SHA_IN, "size": 100, "name": "clip.mp4"}
OUT = {"sha256": SHA_OUT, "size": 50, "name": "out.mp4"}


def held(cluster: Cluster) -> None:
    with cluster.store.transaction():
        cluster.store.put_file("", SHA_IN, 100, "clip.mp4", T0 - 10)


def test_a_submit_naming_a_file_the_tenant_lacks_is_404_naming_the_field(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    reply = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null", "input_file": IN}]})
    assert reply["status"] == 404 and reply["error"].startswith("input_file: no stored file")
    assert cluster.store.list_jobs() == []
    held(cluster)
    wrong_size = cluster.request("submit", {"jobs": [{"scenario": "t", "input_file": {**IN, "size": 99}}]})
    assert wrong_size["status"] == 404


def test_a_jobs_input_is_linked_used_and_shown(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    held(cluster)
    job_id = cluster.submit(input_file=IN)
    assert cluster.job(job_id)["files"] == {"input": IN, "output": None}
    row = cluster.store.find_file("", SHA_IN)
    assert row is not None and row["last_used"] == T0


def test_a_completed_result_with_a_stored_output_completes_and_shows_it(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    with cluster.store.transaction():  # what the data channel records when attempt 1 uploads its output
        cluster.store.put_file("", SHA_OUT, 50, "out.mp4", T0)
        cluster.store.link_job_file(job_id, "output", 1, "", OUT, T0)
    cluster.result(b"w1", job_id, 1, output_file=OUT)
    job = cluster.job(job_id)
    assert job["status"] == "completed" and job["files"] == {"input": None, "output": OUT}


def test_a_completed_result_whose_output_that_attempt_did_not_store_fails_the_attempt(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null", "max_retries": 0}]})[
        "body"]["ids"][0]
    cluster.result(b"w1", job_id, 1, output_file=OUT)
    assert cluster.net.take(b"w1", Kind.ACK)
    job = cluster.job(job_id)
    assert job["status"] == "failed" and "was not stored by attempt 1" in job["error"]
    assert job["files"]["output"] is None
