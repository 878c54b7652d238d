"""Which engine an `auto` job runs on: GStreamer for live work when it can encode the codec, else FFmpeg."""

from __future__ import annotations

from typing import Any

import pytest

from ffrtmp.worker.encoders import Encoder
from ffrtmp.worker.engines.choice import choose_engine


def entry(name: str, codec: str, engine: str, available: bool = True) -> dict[str, Any]:
    return Encoder(name=name, codec=codec, hardware=False, available=available, validated=True,
                   engine=engine).to_dict()


BOTH = {"libx264": entry("libx264", "h264", "ffmpeg"), "libx265": entry("libx265", "h265", "ffmpeg"),
        "x264enc": entry("x264enc", "h264", "gstreamer"), "x265enc": entry("x265enc", "h265", "gstreamer")}


def spec(engine: str = "auto", queue: str = "default", codec: str = "h264",
         output: str | None = None) -> dict[str, Any]:
    return {"engine": engine, "queue": queue, "params": {"codec": codec, "output": output}}


def choose(job: dict[str, Any], encoders: dict[str, dict[str, Any]] = BOTH, *, ffmpeg: bool = True,
           gstreamer: bool = True) -> str:
    return choose_engine(job, encoders, ffmpeg=ffmpeg, gstreamer=gstreamer)


@pytest.mark.parametrize("engine", ["ffmpeg", "gstreamer", "null"])
def test_a_named_engine_is_kept(engine: str) -> None:
    assert choose(spec(engine, queue="live", output="rtmp://h/app/k")) == engine


def test_the_live_queue_goes_to_gstreamer() -> None:
    assert choose(spec(queue="live")) == "gstreamer"


def test_an_rtmp_output_goes_to_gstreamer() -> None:
    assert choose(spec(output="rtmp://h/app/k")) == "gstreamer"
    assert choose(spec(output="RTMPS://h/app/k")) == "gstreamer"


def test_files_in_other_queues_go_to_ffmpeg() -> None:
    assert choose(spec()) == "ffmpeg"
    assert choose(spec(queue="batch", output="clips/x.mp4")) == "ffmpeg"


def test_without_gstreamer_live_work_goes_to_ffmpeg() -> None:
    assert choose(spec(queue="live"), gstreamer=False) == "ffmpeg"
    ffmpeg_only = {k: v for k, v in BOTH.items() if v["engine"] == "ffmpeg"}
    assert choose(spec(queue="live"), ffmpeg_only) == "ffmpeg"


def test_live_work_stays_on_ffmpeg_when_gstreamer_cannot_encode_the_codec() -> None:
    no_vp9_element = {**BOTH, "libvpx-vp9": entry("libvpx-vp9", "vp9", "ffmpeg")}
    assert choose(spec(queue="live", codec="vp9"), no_vp9_element) == "ffmpeg"
    unusable = {**BOTH, "x264enc": entry("x264enc", "h264", "gstreamer", available=False)}
    assert choose(spec(queue="live"), unusable) == "ffmpeg"


def test_an_rtmp_stream_of_a_codec_flv_cannot_carry_stays_on_ffmpeg() -> None:
    assert choose(spec(codec="h265", output="rtmp://h/app/k")) == "ffmpeg"
    assert choose(spec(codec="h265", queue="live")) == "gstreamer"  # a file: any codec the muxer takes


def test_a_named_element_goes_to_gstreamer_and_a_named_ffmpeg_encoder_to_ffmpeg() -> None:
    assert choose(spec(codec="x264enc")) == "gstreamer"
    assert choose(spec(codec="libx264", queue="live")) == "ffmpeg"


def test_gstreamer_is_the_last_resort_for_a_codec_only_it_has() -> None:
    gst_only_h265 = {k: v for k, v in BOTH.items() if k != "libx265"}
    assert choose(spec(codec="h265"), gst_only_h265) == "gstreamer"


def test_nothing_usable_falls_to_ffmpeg_which_then_reports_it() -> None:
    assert choose(spec(codec="av1"), BOTH) == "ffmpeg"
    assert choose(spec(queue="live"), {}, ffmpeg=False, gstreamer=False) == "ffmpeg"
