"""Placement through the coordinator, from the encoder maps workers report in HELLO (fake capability sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffrtmp.protocol import Kind
from tests.test_coordinator import Cluster


def encoder(codec: str, engine: str, available: bool = True, hardware: bool = False) -> dict[str, Any]:
    return {"codec": codec, "engine": engine, "available": available, "hardware": hardware, "validated": True,
            "reason": None if available else "no device"}


CPU_ENCODERS = {"libx264": encoder("h264", "ffmpeg"), "libx265": encoder("h265", "ffmpeg"),
                "h264_nvenc": encoder("h264", "ffmpeg", available=False, hardware=True),
                "x264enc": encoder("h264", "gstreamer"),
                "nvh264enc": encoder("h264", "gstreamer", available=False, hardware=True)}
GPU_ENCODERS = {**CPU_ENCODERS, "h264_nvenc": encoder("h264", "ffmpeg", hardware=True),
                "nvh264enc": encoder("h264", "gstreamer", hardware=True)}
BOTH_ENGINES = ("ffmpeg", "gstreamer", "null")


def dispatched(cluster: Cluster, route: bytes) -> list[str]:
    return [m.body["job"] for m in cluster.net.take(route, Kind.JOB)]


def test_gpu_jobs_wait_with_a_reason_while_cpu_jobs_behind_them_run(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"cpu", "cpu-1", slots=4, engines=BOTH_ENGINES, encoders=CPU_ENCODERS)
    nvenc = cluster.submit(engine="auto", codec="h264_nvenc", queue="live", priority="high")
    nv_gst = cluster.submit(engine="gstreamer", codec="nvh264enc", queue="live", priority="high")
    cpu = [cluster.submit(engine="auto", codec="h264"), cluster.submit(engine="gstreamer", codec="h264"),
           cluster.submit(engine="ffmpeg", codec="h265")]
    assert dispatched(cluster, b"cpu") == cpu
    assert cluster.job(nvenc)["status"] == "pending"
    assert cluster.job(nvenc)["reason"] == "no connected worker has a usable h264_nvenc encoder"
    assert cluster.job(nv_gst)["reason"] == "no connected worker has a usable nvh264enc encoder for gstreamer"

    cluster.hello(b"gpu", "gpu-1", slots=2, engines=BOTH_ENGINES, encoders=GPU_ENCODERS)
    assert sorted(dispatched(cluster, b"gpu")) == sorted([nvenc, nv_gst])
    assert cluster.job(nvenc)["node"] == "gpu-1"


def test_the_codec_must_be_usable_in_the_jobs_engine(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"cpu", "cpu-1", slots=4, engines=BOTH_ENGINES, encoders=CPU_ENCODERS)
    gst_h265 = cluster.submit(engine="gstreamer", codec="h265")
    auto_h265 = cluster.submit(engine="auto", codec="h265")
    assert dispatched(cluster, b"cpu") == [auto_h265]  # FFmpeg has libx265 here
    assert cluster.job(gst_h265)["reason"] == "no connected worker has a usable h265 encoder for gstreamer"


def test_a_worker_without_gstreamer_gets_no_gstreamer_jobs(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    ffmpeg_only = {k: v for k, v in CPU_ENCODERS.items() if v["engine"] == "ffmpeg"}
    cluster.hello(b"ff", "ff-1", slots=2, engines=("ffmpeg", "null"), encoders=ffmpeg_only)
    gst = cluster.submit(engine="gstreamer", codec="h264")
    live = cluster.submit(engine="auto", codec="h264", queue="live")
    assert dispatched(cluster, b"ff") == [live]  # auto: FFmpeg runs it there
    assert cluster.job(gst)["reason"] == "no connected worker has engine gstreamer"


def test_labels_and_least_loaded_among_fitting_workers(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"a", "a-edge", slots=2, engines=BOTH_ENGINES, encoders=CPU_ENCODERS, labels={"zone": "edge"})
    cluster.hello(b"b", "b-edge", slots=2, engines=BOTH_ENGINES, encoders=CPU_ENCODERS, labels={"zone": "edge"})
    cluster.hello(b"c", "c-core", slots=8, engines=BOTH_ENGINES, encoders=CPU_ENCODERS, labels={"zone": "core"})
    jobs = [cluster.submit(engine="ffmpeg", codec="h264", labels={"zone": "edge"}) for _ in range(3)]
    assert dispatched(cluster, b"a") == [jobs[0], jobs[2]]
    assert dispatched(cluster, b"b") == [jobs[1]]
    assert dispatched(cluster, b"c") == []
    fourth = cluster.submit(engine="ffmpeg", codec="h264", labels={"zone": "edge"})
    assert dispatched(cluster, b"b") == [fourth]
    waiting = cluster.submit(engine="ffmpeg", codec="h264", labels={"zone": "edge"})
    assert cluster.job(waiting)["reason"] == "waiting for a free slot"  # the core worker is free but does not fit
    nowhere = cluster.submit(engine="ffmpeg", codec="h264", labels={"zone": "moon"})
    assert cluster.job(nowhere)["reason"] == "no connected worker has label zone=moon"
