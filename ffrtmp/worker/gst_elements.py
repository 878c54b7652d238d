"""The GStreamer encoder elements ffrtmp knows how to drive, and the properties each one needs.

Every element spells bitrate, GOP and speed differently (kbit/s or bit/s, `key-int-max` or `gop-size`), so
each family has one function that turns the job's settings into `name=value` tokens. Detection validates an
element with these same tokens, so a property an installed version lacks shows up in `--probe`, not in a job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ffrtmp.worker.engines.ffmpeg import software_preset

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class EncodeSettings:
    kbps: int
    gop: int
    """Frames between key frames (2 × fps, as the original)."""
    preset: str | None = None
    cpu_count: int = 1
    live: bool = False


def _x26x(settings: EncodeSettings) -> list[str]:
    preset = settings.preset if settings.preset in X264_PRESETS else software_preset(settings.cpu_count)
    tokens = [f"bitrate={settings.kbps}", f"speed-preset={preset}", f"key-int-max={settings.gop}"]
    return tokens + (["tune=zerolatency"] if settings.live else [])


def _openh264(settings: EncodeSettings) -> list[str]:
    return [f"bitrate={settings.kbps * 1000}", "rate-control=bitrate", f"gop-size={settings.gop}",
            "complexity=low"]


def _nvenc(settings: EncodeSettings) -> list[str]:
    preset = "low-latency-hq" if settings.live else "hq"
    return [f"bitrate={settings.kbps}", f"preset={preset}", "rc-mode=cbr", f"gop-size={settings.gop}"]


def _qsv_or_msdk(settings: EncodeSettings) -> list[str]:
    return [f"bitrate={settings.kbps}", "rate-control=cbr", f"gop-size={settings.gop}"]


def _vaapi(settings: EncodeSettings) -> list[str]:
    return [f"bitrate={settings.kbps}", "rate-control=cbr", f"keyframe-period={settings.gop}"]


def _va(settings: EncodeSettings) -> list[str]:
    return [f"bitrate={settings.kbps}", "rate-control=cbr", f"key-int-max={settings.gop}"]


def _vp9(settings: EncodeSettings) -> list[str]:
    return [f"target-bitrate={settings.kbps * 1000}", "end-usage=cbr", "deadline=1", "cpu-used=8",
            f"keyframe-max-dist={settings.gop}", "row-mt=true"]


def _aom(settings: EncodeSettings) -> list[str]:
    return [f"target-bitrate={settings.kbps}", "end-usage=cbr", "cpu-used=8", "usage-profile=realtime",
            f"keyframe-max-dist={settings.gop}", "row-mt=true"]


def _svtav1(settings: EncodeSettings) -> list[str]:
    return [f"target-bitrate={settings.kbps}", "preset=10", f"intra-period-length={settings.gop}"]


@dataclass(frozen=True)
class GstElement:
    name: str
    codec: str
    family: str
    """nvenc, qsv, va, vaapi, msdk for hardware; the library name for software."""
    plugin: str
    package: str
    """The Debian package that ships the plugin (said in `--probe` when it is missing)."""
    properties: Callable[[EncodeSettings], list[str]]
    hardware: bool = False


HARDWARE_ORDER = ("nvenc", "qsv", "va", "vaapi", "msdk")
"""The original's order (NVENC > QSV > VAAPI), the newer `va` plugin before the older `vaapi` one."""

_BAD = "gstreamer1.0-plugins-bad"
ELEMENTS: dict[str, GstElement] = {e.name: e for e in (
    GstElement("nvh264enc", "h264", "nvenc", "nvcodec", _BAD, _nvenc, hardware=True),
    GstElement("nvh265enc", "h265", "nvenc", "nvcodec", _BAD, _nvenc, hardware=True),
    GstElement("qsvh264enc", "h264", "qsv", "qsv", _BAD, _qsv_or_msdk, hardware=True),
    GstElement("qsvh265enc", "h265", "qsv", "qsv", _BAD, _qsv_or_msdk, hardware=True),
    GstElement("vah264enc", "h264", "va", "va", _BAD, _va, hardware=True),
    GstElement("vah265enc", "h265", "va", "va", _BAD, _va, hardware=True),
    GstElement("vaapih264enc", "h264", "vaapi", "vaapi", "gstreamer1.0-vaapi", _vaapi, hardware=True),
    GstElement("vaapih265enc", "h265", "vaapi", "vaapi", "gstreamer1.0-vaapi", _vaapi, hardware=True),
    GstElement("msdkh264enc", "h264", "msdk", "msdk", _BAD, _qsv_or_msdk, hardware=True),
    GstElement("msdkh265enc", "h265", "msdk", "msdk", _BAD, _qsv_or_msdk, hardware=True),
    GstElement("x264enc", "h264", "x264", "x264", "gstreamer1.0-plugins-ugly", _x26x),
    GstElement("openh264enc", "h264", "openh264", "openh264", _BAD, _openh264),
    GstElement("x265enc", "h265", "x265", "x265", _BAD, _x26x),
    GstElement("vp9enc", "vp9", "vpx", "vpx", "gstreamer1.0-plugins-good", _vp9),
    GstElement("svtav1enc", "av1", "svtav1", "svtav1", _BAD, _svtav1),
    GstElement("av1enc", "av1", "aom", "aom", _BAD, _aom),
)}

SOFTWARE_ORDER = ("x264enc", "openh264enc", "x265enc", "vp9enc", "svtav1enc", "av1enc")

PARSER_FOR_CODEC = {"h264": "h264parse", "h265": "h265parse", "av1": "av1parse"}
"""Parsers that put the encoder's output in the form muxers want (avc for mp4/flv); VP9 needs none."""

AAC_ENCODERS = ("avenc_aac", "voaacenc", "fdkaacenc")
"""Audio for RTMP streams: the first of these that is installed (gstreamer1.0-libav, -plugins-bad)."""


def rank(name: str) -> tuple[int, int]:
    """Sort key: hardware before software, then the preferred order within each."""
    element = ELEMENTS.get(name)
    if element is None:
        return (1, 99)
    if element.hardware:
        return (0, HARDWARE_ORDER.index(element.family))
    return (1, SOFTWARE_ORDER.index(name))
