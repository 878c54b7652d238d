"""Encoder detection: parsing `ffmpeg -encoders`, classifying failed test encodes, ranking, picking one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffrtmp.worker import encoders as enc
from ffrtmp.worker.encoders import Encoder, best_for, classify_failure, parse_encoders, rank

# `ffmpeg -hide_banner -encoders`, shortened, from a build with every hardware family enabled.
LISTING = """\
Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ..S... = Slice-level multithreading
 ...X.. = Codec is experimental
 ....B. = Supports draw_horiz_band
 .....D = Supports direct rendering method 1
 ------
 V....D a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V....D libaom-av1           libaom AV1 (codec av1)
 V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
 V....D av1_nvenc            NVIDIA NVENC av1 encoder (codec av1)
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D h264_amf             AMD AMF H.264 Encoder (codec h264)
 V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
 V..... h264_omx             OpenMAX IL H.264 video encoder (codec h264)
 V..... h264_qsv             H.264 / AVC (Intel Quick Sync Video acceleration) (codec h264)
 V..... h264_v4l2m2m         V4L2 mem2mem H.264 encoder wrapper (codec h264)
 V....D h264_vaapi           H.264/AVC (VAAPI) (codec h264)
 V..... h264_videotoolbox    VideoToolbox H.264 Encoder (codec h264)
 V....D libx265              libx265 H.265 / HEVC (codec hevc)
 V....D hevc_nvenc           NVIDIA NVENC hevc encoder (codec hevc)
 VF.... png                  PNG (Portable Network Graphics) image
 V....D libvpx-vp9           libvpx VP9 (codec vp9)
 A....D aac                  AAC (Advanced Audio Coding)
 A..... libopus              libopus Opus (codec opus)
 S..... srt                  SubRip subtitle
"""

EXPECTED = {
    "libaom-av1": ("av1", False),
    "libsvtav1": ("av1", False),
    "av1_nvenc": ("av1", True),
    "libx264": ("h264", False),
    "h264_amf": ("h264", True),
    "h264_nvenc": ("h264", True),
    "h264_qsv": ("h264", True),
    "h264_v4l2m2m": ("h264", True),
    "h264_vaapi": ("h264", True),
    "h264_videotoolbox": ("h264", True),
    "libx265": ("h265", False),
    "hevc_nvenc": ("h265", True),
    "libvpx-vp9": ("vp9", False),
}


def make(name: str, available: bool = True) -> dict[str, object]:
    codec = enc.codec_of(name)
    assert codec is not None
    hardware = name.partition("_")[2] in enc.HARDWARE_SUFFIXES
    return Encoder(name=name, codec=codec, hardware=hardware, available=available, validated=True).to_dict()


def encoder_map(*names: str, unavailable: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    found = {name: make(name) for name in names}
    found.update({name: make(name, available=False) for name in unavailable})
    return found


# ---- parse_encoders ------------------------------------------------------------------------------------


def test_parse_keeps_only_the_video_encoders_of_interest() -> None:
    parsed = {e.name: (e.codec, e.hardware) for e in parse_encoders(LISTING)}
    assert parsed == EXPECTED


def test_parse_leaves_validation_to_later() -> None:
    for encoder in parse_encoders(LISTING):
        assert encoder.available is False
        assert encoder.validated is False
        assert encoder.reason is None
        assert encoder.engine == "ffmpeg"


def test_parse_skips_the_legend_audio_and_unrelated_codecs() -> None:
    names = {e.name for e in parse_encoders(LISTING)}
    assert not names & {"=", "aac", "libopus", "png", "a64multi", "h264_omx", "srt"}


def test_parse_of_empty_or_garbage_text() -> None:
    assert parse_encoders("") == []
    assert parse_encoders("ffmpeg: command not found\n") == []


def test_encoder_to_dict_round_trips() -> None:
    encoder = Encoder(name="libx264", codec="h264", hardware=False, available=True, validated=True)
    assert Encoder(**encoder.to_dict()) == encoder


# ---- classify_failure ----------------------------------------------------------------------------------

TAIL = ("Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0 - maybe "
        "incorrect parameters such as bit_rate, rate, width or height\n")


@pytest.mark.parametrize(("stderr", "expected"), [
    ("[h264_nvenc @ 0x564eb8d8a1c0] Cannot load libcuda.so.1\n" + TAIL, "driver library missing"),
    ("[h264_nvenc @ 0x55d1c2a3b4c0] No NVENC capable devices found\n" + TAIL, "no device"),
    ("[h264_qsv @ 0x562d331581c0] Error initializing an internal MFX session: unsupported (-3)\n" + TAIL,
     "no device"),
    ("[h264_v4l2m2m @ 0x5616c29811c0] Could not find a valid device\n"
     "[h264_v4l2m2m @ 0x5616c29811c0] can't configure encoder\n" + TAIL, "no device"),
    ("[AVHWDeviceContext @ 0x55819e568a80] No VA display found for device /dev/dri/renderD128.\n"
     "Device creation failed: -22.\n"
     "Failed to set value '/dev/dri/renderD128' for option 'vaapi_device': Invalid argument\n"
     "Error parsing global options: Invalid argument\n", "no device"),
    ("Unknown encoder 'foo'\n", "unknown encoder"),
])
def test_classify_real_failures(stderr: str, expected: str) -> None:
    assert classify_failure(stderr, 1) == expected


def test_classify_anything_else_quotes_the_exit_code_and_last_line() -> None:
    stderr = ("[libx264 @ 0x55] width not divisible by 2 (257x144)\n"
              "Error while opening encoder for output stream #0:0\n\n   \n")
    assert classify_failure(stderr, 1) == (
        "test encode failed (exit 1): Error while opening encoder for output stream #0:0")


def test_classify_empty_stderr() -> None:
    assert classify_failure("", -9) == "test encode failed (exit -9): "


def test_classify_cuts_a_long_last_line() -> None:
    reason = classify_failure("x" * 1000, 2)
    assert reason == "test encode failed (exit 2): " + "x" * 200


# ---- rank and best_for ---------------------------------------------------------------------------------


def test_rank_puts_hardware_first_in_the_preferred_order() -> None:
    parsed = sorted(parse_encoders(LISTING), key=rank)
    names = [e.name for e in parsed]
    hardware = [e.hardware for e in parsed]
    assert hardware == sorted(hardware, reverse=True)  # every hardware encoder before any software one
    assert names.index("h264_nvenc") < names.index("h264_qsv") < names.index("h264_vaapi")
    assert names.index("h264_vaapi") < names.index("h264_amf") < names.index("h264_videotoolbox")
    assert names.index("h264_videotoolbox") < names.index("h264_v4l2m2m")
    assert names.index("h264_v4l2m2m") < names.index("libx264")
    assert names.index("libx264") < names.index("libx265") < names.index("libvpx-vp9")
    assert names.index("libvpx-vp9") < names.index("libsvtav1") < names.index("libaom-av1")


def test_rank_of_unknown_names_sorts_last_within_their_kind() -> None:
    odd_software = Encoder(name="libsomething", codec="h264", hardware=False)
    odd_hardware = Encoder(name="h264_weird", codec="h264", hardware=True)
    assert rank(odd_software) == (1, 99)
    assert rank(odd_hardware) == (0, 99)
    assert rank(Encoder(name="h264_mf", codec="h264", hardware=True)) < rank(odd_hardware)


def test_best_for_prefers_available_hardware() -> None:
    found = encoder_map("libx264", "h264_vaapi", "h264_qsv", "h264_nvenc")
    assert best_for("h264", found) == "h264_nvenc"


def test_best_for_skips_unavailable_encoders() -> None:
    found = encoder_map("libx264", "h264_vaapi", unavailable=("h264_nvenc", "h264_qsv"))
    assert best_for("h264", found) == "h264_vaapi"
    found = encoder_map("libx264", unavailable=("h264_nvenc", "h264_qsv", "h264_vaapi"))
    assert best_for("h264", found) == "libx264"


def test_best_for_matches_the_codec_only() -> None:
    found = encoder_map("libx264", "hevc_nvenc", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1")
    assert best_for("h265", found) == "hevc_nvenc"
    assert best_for("vp9", found) == "libvpx-vp9"
    assert best_for("av1", found) == "libsvtav1"


def test_best_for_a_codec_with_nothing_available() -> None:
    assert best_for("av1", encoder_map("libx264", unavailable=("libsvtav1",))) is None
    assert best_for("h264", {}) is None


def test_best_for_a_named_encoder_only_when_available() -> None:
    found = encoder_map("libx264", "h264_nvenc", unavailable=("h264_qsv",))
    assert best_for("libx264", found) == "libx264"  # asked for by name: no hardware substitute
    assert best_for("h264_qsv", found) is None
    assert best_for("h264_vaapi", found) is None  # not listed at all


def test_best_for_only_looks_at_the_engine_asked_for() -> None:
    found = encoder_map("libx264")
    found["x264enc"] = Encoder(name="x264enc", codec="h264", hardware=False, available=True,
                               engine="gstreamer").to_dict()
    assert best_for("h264", found, "ffmpeg") == "libx264"
    assert best_for("h264", found, "gstreamer") == "x264enc"
    legacy = {"libx264": {"codec": "h264", "available": True, "hardware": False}}  # no engine field: FFmpeg's
    assert best_for("h264", legacy, "ffmpeg") == "libx264"
    assert best_for("h264", legacy, "gstreamer") is None


def test_best_for_ignores_extra_fields_in_the_map() -> None:
    found = encoder_map("libx264")
    found["libx264"]["fps_at_720p"] = 410.0  # fields a newer worker may add
    assert best_for("h264", found) == "libx264"


# ---- against the real ffmpeg ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detected(ffmpeg: str) -> dict[str, Encoder]:
    return {e.name: e for e in enc.detect(ffmpeg)}


def test_detect_validates_libx264(detected: dict[str, Encoder]) -> None:
    x264 = detected["libx264"]
    assert (x264.available, x264.validated, x264.reason) == (True, True, None)
    assert (x264.codec, x264.hardware) == ("h264", False)


@pytest.mark.parametrize("name", ["h264_nvenc", "h264_qsv", "h264_vaapi"])
def test_detect_reports_a_listed_gpu_encoder_as_unavailable_with_a_reason(detected: dict[str, Encoder],
                                                                         name: str) -> None:
    if name not in detected:
        pytest.skip(f"this ffmpeg build does not list {name}")
    found = detected[name]
    if found.available:
        pytest.skip(f"{name} is usable here")
    assert found.validated is True
    assert found.reason in ("driver library missing", "no device") or found.reason.startswith("test encode failed")
    assert found.hardware is True


def test_detect_sorts_best_first(detected: dict[str, Encoder]) -> None:
    ordered = list(detected.values())
    assert ordered == sorted(ordered, key=rank)
    assert all(e.validated for e in ordered)


def test_detect_without_ffmpeg_or_with_a_broken_one(tmp_path: Path) -> None:
    assert enc.detect(None) == []
    assert enc.detect(str(tmp_path / "no-such-ffmpeg")) == []


def test_validate_times_out(ffmpeg: str) -> None:
    encoder = Encoder(name="libx264", codec="h264", hardware=False)
    checked = enc.validate(ffmpeg, encoder, timeout=0.001)
    assert (checked.available, checked.validated) == (False, True)
    assert checked.reason == "timeout after 0.001s"


def test_validate_an_unknown_encoder(ffmpeg: str) -> None:
    checked = enc.validate(ffmpeg, Encoder(name="h264_nosuch", codec="h264", hardware=True))
    assert (checked.available, checked.validated, checked.reason) == (False, True, "unknown encoder")


def test_validate_when_ffmpeg_cannot_run(tmp_path: Path) -> None:
    checked = enc.validate(str(tmp_path / "missing-ffmpeg"), Encoder(name="libx264", codec="h264", hardware=False))
    assert checked.available is False
    assert checked.reason is not None and checked.reason.startswith("cannot run ffmpeg: ")


def test_test_encode_argv_has_no_shell_and_uses_the_encoder(ffmpeg: str) -> None:
    argv = enc.test_encode_argv(ffmpeg, Encoder(name="h264_vaapi", codec="h264", hardware=True))
    assert argv[0] == ffmpeg
    assert argv[argv.index("-c:v") + 1] == "h264_vaapi"
    assert "-vaapi_device" in argv
    assert argv[-3:] == ["-f", "null", "-"]
