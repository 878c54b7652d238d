"""Live RTMP pushes to a real nginx-rtmp server, read back with ffprobe while the job runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.worker.capabilities import Capabilities
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster, shared_capabilities, wait_for_workers
from tests.rtmp import RtmpServer, read_stream, start_rtmp_server
from tests.test_input_audio import make_input
from tests.test_runner import Harness, finish, make_attempt

pytestmark = pytest.mark.slow

LIVE: dict[str, Any] = {"resolution": "320x180", "fps": 10, "duration": 3, "codec": "h264", "bitrate": "300k"}


@pytest.fixture(scope="module")
def capabilities(ffmpeg: str, gst_launch: str) -> Capabilities:
    found = shared_capabilities()
    assert "gstreamer" in found.engines, found.missing
    return found


def kinds_of(streams: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {stream["codec_type"]: stream for stream in streams}


def test_the_rtmp_server_lives_in_its_own_dir_and_stops_cleanly(tmp_path: Path,
                                                                 nginx_rtmp: tuple[str, str]) -> None:
    server = start_rtmp_server(tmp_path / "nginx", *nginx_rtmp)
    try:
        assert server.process.poll() is None
        assert eventually(lambda: (tmp_path / "nginx" / "nginx.pid").exists(), message="nginx's pid file")
        assert int((tmp_path / "nginx" / "nginx.pid").read_text()) == server.process.pid  # one process, ours
        assert (tmp_path / "nginx" / "logs" / "error.log").exists()
    finally:
        server.stop()
    assert server.process.returncode is not None


@pytest.mark.parametrize("engine", ["ffmpeg", "gstreamer"])
def test_a_live_push_can_be_watched_while_it_runs(engine: str, tmp_path: Path, rtmp_server: RtmpServer,
                                                  ffprobe: str, capabilities: Capabilities) -> None:
    url = rtmp_server.url(f"{engine}-{tmp_path.name}")
    attempt = make_attempt(f"live-{engine}", engine=engine, queue="live", output=url, **LIVE)
    harness = Harness(tmp_path / "work", capabilities.ffmpeg, capabilities.encoder_map())
    recorder, thread = harness.start(attempt)
    eventually(lambda: "started" in recorder.kinds() or not thread.is_alive(), timeout=60,
               message=f"{engine} to start pushing")
    found: dict[str, Any] = {}

    def watch() -> None:
        found["streams"] = read_stream(ffprobe, url)
        found["still_pushing"] = thread.is_alive()

    # A player joins while the job runs (nginx holds a player that comes before the first frame).
    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(30)
    finish(thread)
    result = recorder.finished()
    assert result["status"] == "completed", (result, rtmp_server.log_tail())
    streams = kinds_of(found.get("streams", []))
    assert streams, f"nothing could be read from {url}:\n{rtmp_server.log_tail()}"
    assert found["still_pushing"], "the stream was read back while the job ran"
    video = streams["video"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert streams["audio"]["codec_name"] == "aac"  # the sine track the original's streams carry
    metrics = result["metrics"]
    assert metrics["engine"] == engine
    assert metrics["out_time"] == pytest.approx(3.0, abs=0.2)
    assert metrics["wall_seconds"] >= 2.5  # real time: three seconds of stream take three seconds
    assert result["output"] == url


@pytest.mark.parametrize(("audio", "heard"), [("aac", True), (None, False), ("adpcm_ima_wav", False)],
                         ids=["aac", "video-only", "undecodable"])
def test_a_gstreamer_push_of_a_file_carries_its_audio_when_it_can(audio: str | None, heard: bool, tmp_path: Path,
                                                                  rtmp_server: RtmpServer, ffmpeg: str,
                                                                  ffprobe: str, capabilities: Capabilities) -> None:
    """A track is heard; no track, or one GStreamer cannot decode, must not hold the muxer (the push ends)."""
    source = make_input(ffmpeg, tmp_path / "source.mkv", audio=audio, seconds=4)
    url = rtmp_server.url(f"gst-input-{audio}-{tmp_path.name}")
    attempt = make_attempt(f"input-{audio}", engine="gstreamer", queue="live", output=url, input=str(source), **LIVE)
    harness = Harness(tmp_path / "work", capabilities.ffmpeg, capabilities.encoder_map())
    recorder, thread = harness.start(attempt)
    eventually(lambda: "started" in recorder.kinds() or not thread.is_alive(), timeout=60,
               message="gstreamer to start pushing")
    streams = kinds_of(read_stream(ffprobe, url))
    finish(thread)
    result = recorder.finished()
    assert result["status"] == "completed", (result, recorder.texts()[-5:], rtmp_server.log_tail())
    assert streams["video"]["codec_name"] == "h264"
    assert streams.get("audio", {}).get("codec_name") == ("aac" if heard else None), streams
    assert result["metrics"]["out_time"] == pytest.approx(3.0, abs=0.2)
    if audio == "adpcm_ima_wav":
        assert any("cannot decode its adpcm_ima_wav audio" in text for text in recorder.texts())


def test_a_live_job_through_the_cluster_picks_gstreamer_and_completes(tmp_path: Path, rtmp_server: RtmpServer,
                                                                      ffprobe: str,
                                                                      capabilities: Capabilities) -> None:
    url = rtmp_server.url(f"cluster-{tmp_path.name}")
    with inprocess_cluster(tmp_path, stall_timeouts={"live": 2.5}) as cluster:
        cluster.add_worker("live-worker", capabilities=capabilities)
        wait_for_workers(cluster, "live-worker")
        with cluster.client() as client:
            job_id = client.submit("live-test", queue="live", priority="high", output=url, **LIVE)
            running = eventually(lambda: (job := client.get(job_id))["status"] == "running" and job, timeout=30,
                                 message="the live job to run")
            streams = kinds_of(read_stream(ffprobe, url))
            job = client.wait(job_id, timeout=60)
    assert running["node"] == "live-worker"
    assert set(streams) == {"video", "audio"}, rtmp_server.log_tail()
    assert job["status"] == "completed", job
    assert job["attempts"] == 1  # never taken for stalled or failed
    assert job["metrics"]["engine"] == "gstreamer" and job["metrics"]["encoder"] == "x264enc"
    assert [h["status"] for h in job["history"]] == ["pending", "assigned", "running", "completed"]
