"""`GET /api/jobs/{id}/logs?follow=1`: a job's log as Server-Sent Events until it ends, read with `curl -N`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually
from tests.httpapi import Curl, http_master
from tests.inprocess import wait_for_workers


def sse_events(text: str) -> list[tuple[str, Any, str | None]]:
    """(event, data, id) of each event in an SSE body; comments (keep-alives) left out."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


def follow(curl: Curl, job_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["curl", "-sS", "-N", "--cacert", str(curl.cacert), "--max-time", "60", *extra,
                             f"{curl.base}/api/jobs/{job_id}/logs?follow=1"], stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_following_a_running_job_streams_its_lines_in_order_then_its_end(tmp_path: Path, ffmpeg: str) -> None:
    with http_master(tmp_path) as (cluster, curl):
        job = {"scenario": "follow", "codec": "h264", "resolution": "160x120", "fps": 30, "duration": 3,
               "bitrate": "200k"}
        job_id = curl.post("/api/jobs", body=job).json()["ids"][0]
        cluster.add_worker("w1")
        wait_for_workers(cluster, "w1")
        eventually(lambda: curl.get(f"/api/jobs/{job_id}").json()["status"] == "running", timeout=30,
                   message="the job to run")
        reader = follow(curl, job_id)
        out, _ = reader.communicate(timeout=60)
        events = sse_events(out)
        stored = curl.get(f"/api/jobs/{job_id}/logs").json()["lines"]
    lines = [data for name, data, _ in events if name == "line"]
    assert [(x["attempt"], x["seq"]) for x in lines] == [(x["attempt"], x["seq"]) for x in stored]
    assert len(lines) >= 5
    assert [event_id for name, _, event_id in events if name == "line"][-1] == f"{lines[-1]['attempt']}." \
        f"{lines[-1]['seq']}"
    assert events[-1][0] == "end" and events[-1][1]["status"] == "completed"
    assert ("status", {"status": "running"}, None) in events


def test_a_finished_job_streams_what_is_stored_and_ends_and_an_unknown_one_is_404(tmp_path: Path) -> None:
    with http_master(tmp_path) as (_, curl):
        job_id = curl.post("/api/jobs", body={"scenario": "null", "engine": "ffmpeg"}).json()["ids"][0]
        curl.post(f"/api/jobs/{job_id}/cancel")
        out, _ = follow(curl, job_id).communicate(timeout=30)
        assert sse_events(out) == [("end", {"id": job_id, "status": "canceled", "error": "canceled by user",
                                            "attempts": 0}, None)]
        missing = curl.get("/api/jobs/ffffffffffff/logs?follow=1")
        assert missing.status == 404 and missing.headers["content-type"] == "application/json"


def test_a_follower_that_hangs_up_is_dropped_on_the_master(tmp_path: Path) -> None:
    with http_master(tmp_path) as (cluster, curl):
        job_id = curl.post("/api/jobs", body={"scenario": "null", "engine": "ffmpeg"}).json()["ids"][0]
        reader = follow(curl, job_id)  # pending, no worker: it would wait for ever
        logbook = cluster.server.coordinator.logbook
        eventually(lambda: logbook.follower_count() == 1, message="the follow to be registered")
        reader.kill()
        reader.communicate()
        eventually(lambda: logbook.follower_count() == 0, timeout=10, message="the follower to be dropped")
