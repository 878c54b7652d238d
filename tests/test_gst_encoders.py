"""GStreamer element detection: parsing `gst-inspect-1.0`, test pipelines, failure reasons, what is offered."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.worker import capabilities as capabilities_module
from ffrtmp.worker import gst_encoders
from ffrtmp.worker.encoders import Encoder, best_for, rank
from ffrtmp.worker.gst_elements import ELEMENTS, EncodeSettings
from ffrtmp.worker.gst_encoders import classify_failure, encoder_for, missing_reason, parse_listing

# `gst-inspect-1.0` (no arguments), cut down: the first lines are from this Debian 12 machine; the nvcodec,
# qsv, va, vaapi and msdk lines are as those plugins list their elements on machines with the hardware.
LISTING = """\
adpcmenc:  adpcmenc: ADPCM encoder
aom:  av1enc: AV1 Encoder
debug:  progressreport: Progress report
flv:  flvmux: FLV muxer
libav:  avenc_aac: libav AAC (Advanced Audio Coding) encoder
libav:  avenc_h264_omx: libav OpenMAX IL H.264 video encoder encoder
openh264:  openh264enc: OpenH264 video encoder
rtmp:  rtmpsink: RTMP output sink
vpx:  vp9enc: On2 VP9 Encoder
x264:  x264enc: x264 H.264 Encoder
x265:  x265enc: x265enc
coretracers:  latency (GstTracerFactory)
typefindfunctions: video/x-h264: h264, x264, 264
nvcodec:  nvh264enc: NVENC H.264 Video Encoder
nvcodec:  nvh265enc: NVENC HEVC Video Encoder
nvcodec:  nvh264dec: NVDEC h264 Video Decoder
qsv:  qsvh264enc: Intel Quick Sync Video H.264 Encoder
va:  vah264enc: VA-API H.264 Encoder in Intel(R) Gen Graphics
vaapi:  vaapih264enc: VA-API H264 encoder
msdk:  msdkh264enc: Intel MSDK H264 encoder

Total count: 263 plugins, 1580 features
"""

# What gst-launch-1.0 writes on stderr when a test pipeline fails. The first two were captured here; the
# hardware ones follow the format GStreamer's error messages take (element path, message, debug detail).
UNKNOWN = 'WARNING: erroneous pipeline: no element "nvh264enc"\n'
BAD_PROPERTY = 'WARNING: erroneous pipeline: could not set property "speed-preset" in element "x264enc" to "foo"\n'
NO_CUDA_LIBRARY = """\
ERROR: from element /GstPipeline:pipeline0/GstNvH264Enc:nvh264enc0: Could not initialize supporting library.
Additional debug info:
../sys/nvcodec/gstnvbaseenc.c(590): gst_nv_base_enc_open (): /GstPipeline:pipeline0/GstNvH264Enc:nvh264enc0:
Could not open library libcuda.so.1
ERROR: pipeline doesn't want to preroll.
"""
NO_CUDA_DEVICE = """\
ERROR: from element /GstPipeline:pipeline0/GstNvH264Enc:nvh264enc0: Could not initialize supporting library.
Additional debug info:
../sys/nvcodec/gstnvbaseenc.c(590): gst_nv_base_enc_open (): /GstPipeline:pipeline0/GstNvH264Enc:nvh264enc0:
Failed to create CUDA context
ERROR: pipeline doesn't want to preroll.
"""
NO_VA_DRIVER = """\
libva info: VA-API version 1.17.0
libva info: User requested driver 'iHD'
libva info: va_openDriver() returns -1
ERROR: from element /GstPipeline:pipeline0/GstVaapiEncodeH264:vaapiencodeh264-0: Could not initialize supporting \
library.
"""
NO_QSV_SESSION = """\
ERROR: from element /GstPipeline:pipeline0/GstQsvH264Enc:qsvh264enc0: Could not open resource for reading.
Additional debug info:
../sys/qsv/gstqsvencoder.cpp(512): gst_qsv_encoder_open (): /GstPipeline:pipeline0/GstQsvH264Enc:qsvh264enc0:
Failed to open MFX session
"""
OTHER = """\
ERROR: from element /GstPipeline:pipeline0/GstX264Enc:x264enc0: Internal data stream error.
Additional debug info:
../libs/gst/base/gstbasesrc.c(3132): gst_base_src_loop (): streaming stopped, reason not-negotiated (-4)
ERROR: pipeline doesn't want to preroll.
"""


# ---- parsing and the element table ---------------------------------------------------------------------


def test_parse_listing_maps_elements_to_plugins() -> None:
    listed = parse_listing(LISTING)
    assert listed["x264enc"] == "x264"
    assert listed["nvh264enc"] == "nvcodec"
    assert listed["vaapih264enc"] == "vaapi"
    assert listed["progressreport"] == "debug"
    assert "Total" not in listed and "latency" not in listed


def test_parse_listing_of_empty_or_garbage_text() -> None:
    assert parse_listing("") == {}
    assert parse_listing("gst-inspect-1.0: command not found\n") == {}


def test_the_known_elements_in_a_listing() -> None:
    listed = parse_listing(LISTING)
    known = {name for name in listed if name in ELEMENTS}
    assert known == {"av1enc", "openh264enc", "vp9enc", "x264enc", "x265enc", "nvh264enc", "nvh265enc",
                     "qsvh264enc", "vah264enc", "vaapih264enc", "msdkh264enc"}
    assert "nvh264dec" not in ELEMENTS and "avenc_h264_omx" not in ELEMENTS


def test_encoder_records_say_gstreamer() -> None:
    record = encoder_for(ELEMENTS["nvh264enc"])
    assert (record.name, record.codec, record.hardware, record.engine) == ("nvh264enc", "h264", True, "gstreamer")
    assert (record.available, record.validated) == (False, False)


def test_rank_puts_hardware_first_in_the_original_order() -> None:
    names = [e.name for e in sorted((encoder_for(e) for e in ELEMENTS.values()), key=rank)]
    assert names.index("nvh264enc") < names.index("qsvh264enc") < names.index("vah264enc")
    assert names.index("vah264enc") < names.index("vaapih264enc") < names.index("x264enc")
    assert names.index("x264enc") < names.index("openh264enc")
    hardware = [ELEMENTS[n].hardware for n in names]
    assert hardware == sorted(hardware, reverse=True)


def test_best_for_picks_per_engine() -> None:
    found: dict[str, dict[str, Any]] = {
        "libx264": Encoder("libx264", "h264", False, available=True).to_dict(),
        "x264enc": encoder_for(ELEMENTS["x264enc"]).to_dict(),
        "nvh264enc": encoder_for(ELEMENTS["nvh264enc"]).to_dict(),
        "vah264enc": encoder_for(ELEMENTS["vah264enc"]).to_dict(),
    }
    found["x264enc"]["available"] = True
    found["vah264enc"]["available"] = True
    assert best_for("h264", found, "gstreamer") == "vah264enc"  # hardware first; nvh264enc is unusable
    assert best_for("h264", found, "ffmpeg") == "libx264"
    assert best_for("h264", found) == "libx264"  # FFmpeg unless told otherwise
    assert best_for("x264enc", found, "gstreamer") == "x264enc"
    assert best_for("x264enc", found, "ffmpeg") is None  # a GStreamer element is no FFmpeg encoder
    assert best_for("libx264", found, "gstreamer") is None


@pytest.mark.parametrize("name", sorted(ELEMENTS))
def test_every_element_gets_bitrate_and_gop_properties(name: str) -> None:
    tokens = ELEMENTS[name].properties(EncodeSettings(kbps=2500, gop=60, preset="veryfast", cpu_count=4, live=True))
    assert all("=" in token and " " not in token for token in tokens)
    assert any("2500" in token for token in tokens), tokens
    assert any(token.endswith("=60") for token in tokens), tokens


def test_x264_preset_is_taken_only_when_x264_knows_it() -> None:
    x264 = ELEMENTS["x264enc"].properties
    assert "speed-preset=veryfast" in x264(EncodeSettings(kbps=1, gop=2, preset="veryfast"))
    assert "speed-preset=ultrafast" in x264(EncodeSettings(kbps=1, gop=2, preset="p4", cpu_count=2))
    assert "speed-preset=fast" in x264(EncodeSettings(kbps=1, gop=2, cpu_count=16))
    assert "tune=zerolatency" in x264(EncodeSettings(kbps=1, gop=2, live=True))
    assert "tune=zerolatency" not in x264(EncodeSettings(kbps=1, gop=2))


def test_nvenc_uses_the_originals_low_latency_cbr_for_streams() -> None:
    tokens = ELEMENTS["nvh264enc"].properties(EncodeSettings(kbps=5000, gop=60, live=True))
    assert tokens == ["bitrate=5000", "preset=low-latency-hq", "rc-mode=cbr", "gop-size=60"]


def test_bits_per_second_elements_get_bits() -> None:
    assert "bitrate=800000" in ELEMENTS["openh264enc"].properties(EncodeSettings(kbps=800, gop=2))
    assert "target-bitrate=800000" in ELEMENTS["vp9enc"].properties(EncodeSettings(kbps=800, gop=2))


# ---- failure reasons -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("stderr", "expected"), [
    (UNKNOWN, "unknown element"),
    (NO_CUDA_LIBRARY, "driver library missing"),
    (NO_CUDA_DEVICE, "no device"),
    (NO_VA_DRIVER, "driver library missing"),
    (NO_QSV_SESSION, "no device"),
])
def test_classify_hardware_failures(stderr: str, expected: str) -> None:
    assert classify_failure(stderr, 1) == expected


def test_classify_a_property_this_version_lacks() -> None:
    assert classify_failure(BAD_PROPERTY, 1) == (
        "property not supported by this version: " + BAD_PROPERTY.strip())


def test_classify_anything_else_quotes_the_last_meaningful_line() -> None:
    assert classify_failure(OTHER, 1) == ("test pipeline failed (exit 1): ../libs/gst/base/gstbasesrc.c(3132): "
                                          "gst_base_src_loop (): streaming stopped, reason not-negotiated (-4)")
    assert classify_failure("", -9) == "test pipeline failed (exit -9): "


def test_missing_reasons_name_the_plugin_and_package() -> None:
    assert missing_reason(ELEMENTS["nvh264enc"], plugin_installed=True) == (
        "no device (plugin nvcodec is installed but offers no nvh264enc)")
    assert missing_reason(ELEMENTS["vaapih264enc"], plugin_installed=False) == (
        "not installed (plugin vaapi, package gstreamer1.0-vaapi)")


def test_a_pipeline_that_exits_0_without_output_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    # openh264enc can print an error per frame and still exit 0: only encoded bytes prove it works.
    def quiet_failure(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 0, b"", b"[OpenH264] Error:CWelsH264SVCEncoder::EncodeFrame()\n")

    monkeypatch.setattr(gst_encoders.subprocess, "run", quiet_failure)
    checked = gst_encoders.validate("gst-launch-1.0", encoder_for(ELEMENTS["openh264enc"]))
    assert (checked.available, checked.validated) == (False, True)
    assert checked.reason == ("test pipeline produced no encoded data: "
                              "[OpenH264] Error:CWelsH264SVCEncoder::EncodeFrame()")


# ---- against the real gst-launch-1.0 and gst-inspect-1.0 -----------------------------------------------


def test_test_pipeline_argv_uses_the_jobs_properties(gst_launch: str) -> None:
    argv = gst_encoders.test_pipeline_argv(gst_launch, ELEMENTS["x264enc"])
    assert argv[:2] == [gst_launch, "-q"]
    assert argv[argv.index("x264enc") + 1].startswith("bitrate=")
    assert argv[-3:] == ["!", "fdsink", "fd=1"]


@pytest.fixture(scope="module")
def detected(gst_launch: str, gst_inspect: str) -> dict[str, Encoder]:
    return {e.name: e for e in gst_encoders.detect(gst_inspect, gst_launch)}


def test_detect_validates_x264enc(detected: dict[str, Encoder]) -> None:
    x264 = detected["x264enc"]
    assert (x264.available, x264.validated, x264.reason, x264.engine) == (True, True, None, "gstreamer")


@pytest.mark.parametrize("name", ["nvh264enc", "qsvh264enc", "vaapih264enc"])
def test_detect_reports_gpu_elements_unavailable_with_a_reason(detected: dict[str, Encoder], name: str) -> None:
    element = detected[name]
    if element.available:
        pytest.skip(f"{name} works on this machine")
    assert element.reason
    assert element.reason.startswith(("no device", "not installed", "driver library missing", "unknown element"))
    assert element.hardware is True


def test_detect_sorts_best_first(detected: dict[str, Encoder]) -> None:
    ordered = list(detected.values())
    assert ordered == sorted(ordered, key=rank)


def test_validate_an_element_this_machine_lacks(gst_launch: str, gst_inspect: str) -> None:
    listing = subprocess.run([gst_inspect], capture_output=True, text=True, timeout=30, check=True).stdout
    if "nvh264enc" in parse_listing(listing):
        pytest.skip("nvh264enc is installed here")
    checked = gst_encoders.validate(gst_launch, encoder_for(ELEMENTS["nvh264enc"]))
    assert (checked.available, checked.validated, checked.reason) == (False, True, "unknown element")


def test_validate_times_out(gst_launch: str) -> None:
    checked = gst_encoders.validate(gst_launch, encoder_for(ELEMENTS["x264enc"]), timeout=0.001)
    assert (checked.available, checked.reason) == (False, "timeout after 0.001s")


def test_validate_when_gst_launch_cannot_run(tmp_path: Path) -> None:
    checked = gst_encoders.validate(str(tmp_path / "missing"), encoder_for(ELEMENTS["x264enc"]))
    assert checked.available is False
    assert checked.reason is not None and checked.reason.startswith("cannot run gst-launch-1.0: ")


def test_detect_without_gstreamer(tmp_path: Path) -> None:
    assert gst_encoders.detect(None, None) == []
    assert gst_encoders.detect(str(tmp_path / "no-inspect"), str(tmp_path / "no-launch")) == []


def test_an_aac_element_is_found_for_stream_audio(gst_launch: str) -> None:
    assert gst_encoders.audio_encoder(gst_launch) in ("avenc_aac", "voaacenc", "fdkaacenc")


# ---- what the worker offers ----------------------------------------------------------------------------


def test_gstreamer_is_offered_with_its_elements(gst_launch: str) -> None:
    found = capabilities_module.detect(["gstreamer", "null"])
    assert found.engines == ["gstreamer", "null"]
    assert found.gstreamer == gst_launch
    assert "gstreamer" not in found.missing
    encoders = found.encoder_map()
    assert encoders["x264enc"]["available"] is True
    assert {info["engine"] for info in encoders.values()} == {"gstreamer"}


def test_no_gstreamer_elements_when_the_engine_is_not_wanted(ffmpeg: str) -> None:
    found = capabilities_module.detect(["ffmpeg"])
    assert found.engines == ["ffmpeg"]
    assert all(e.engine == "ffmpeg" for e in found.encoders)


def test_gstreamer_without_a_usable_h264_element_is_not_offered(monkeypatch: pytest.MonkeyPatch,
                                                               gst_launch: str) -> None:
    broken = encoder_for(ELEMENTS["x264enc"])
    broken.validated, broken.reason = True, "test pipeline failed (exit 1): oops"
    x265 = encoder_for(ELEMENTS["x265enc"])
    x265.validated, x265.available = True, True
    monkeypatch.setattr(capabilities_module.gst_encoders, "detect", lambda *args, **kwargs: [broken, x265])
    found = capabilities_module.detect(["gstreamer", "null"])
    assert found.engines == ["null"]
    assert found.gstreamer is None
    assert found.missing["gstreamer"] == "no usable H.264 element (x264enc: test pipeline failed (exit 1): oops)"
    assert found.encoder_map() == {}  # elements of an engine not offered attract no jobs
    assert {e.name for e in found.encoders} == {"x264enc", "x265enc"}  # but --probe still shows them


def test_gstreamer_missing_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities_module, "find_gstreamer", lambda: None)
    found = capabilities_module.detect(["gstreamer", "null"])
    assert found.engines == ["null"]
    assert found.missing == {"gstreamer": "gst-launch-1.0 not found (install gstreamer1.0-tools and the plugins)"}
