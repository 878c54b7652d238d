"""Following a real FFmpeg job's log over real sockets: order, latency, and the end."""

from __future__ import annotations

import time
from pathlib import Path

from tests.inprocess import inprocess_cluster, wait_for_workers


def test_a_follower_sees_every_line_in_order_within_a_fraction_of_a_second(tmp_path: Path, ffmpeg: str) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        with cluster.client() as client:
            job_id = client.submit("follow", codec="h264", resolution="320x180", fps=30, duration=3,
                                   bitrate="300k")
            stream = client.follow_logs(job_id)  # subscribed while the job is still pending
            cluster.add_worker("w1")
            wait_for_workers(cluster, "w1")
            lines, delays = [], []
            for line in stream:
                delays.append(time.time() - line["at"])
                lines.append(line)
            stored = client.logs(job_id)["lines"]
        assert stream.job is not None and stream.job["status"] == "completed"
        assert [(x["attempt"], x["seq"]) for x in lines] == [(x["attempt"], x["seq"]) for x in stored]
        assert [x["seq"] for x in lines] == sorted(x["seq"] for x in lines)
        assert len(lines) >= 5 and any(x["line"].startswith("$ ") for x in lines)
        assert sorted(delays)[len(delays) // 2] < 0.6, f"median line latency {sorted(delays)[len(delays) // 2]:.3f}s"


def test_following_an_unknown_job_is_not_found(tmp_path: Path) -> None:
    import pytest

    from ffrtmp.errors import NotFound

    with inprocess_cluster(tmp_path) as cluster, cluster.client() as client, pytest.raises(NotFound):
        list(client.follow_logs("abcdef"))
