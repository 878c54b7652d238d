"""Which video encoders this worker can really use.

`ffmpeg -encoders` lists what FFmpeg was built with, not what works here: `h264_nvenc` is listed on
machines without an NVIDIA GPU. So each encoder is checked with a tiny test encode under a timeout, and a
failure is classified (no device, driver library missing, unknown encoder, timeout) so `--probe` can say why.
The same `Encoder` records describe GStreamer elements (`engine="gstreamer"`, see gst_encoders.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from ffrtmp.worker import gst_elements
from ffrtmp.worker.tools import run_quiet

VALIDATION_TIMEOUT = 5.0

CODEC_OF = {
    "libx264": "h264", "libx264rgb": "h264", "libopenh264": "h264",
    "libx265": "h265",
    "libvpx-vp9": "vp9",
    "libaom-av1": "av1", "libsvtav1": "av1", "librav1e": "av1",
}
_HW_PREFIX = {"h264": "h264", "hevc": "h265", "vp9": "vp9", "av1": "av1"}
HARDWARE_SUFFIXES = ("nvenc", "qsv", "vaapi", "amf", "videotoolbox", "v4l2m2m", "mf", "vulkan")

PRIORITY = {"nvenc": 0, "qsv": 1, "vaapi": 2, "amf": 3, "videotoolbox": 4, "v4l2m2m": 5, "vulkan": 6, "mf": 7}
"""Hardware first, in the original's order (NVENC > QSV > VAAPI), then software."""

SOFTWARE_ORDER = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1", "librav1e", "libopenh264")

_ENCODER_LINE = re.compile(r"^\s*V[A-Z.]{5}\s+(\S+)\s+(.*)$")


@dataclass
class Encoder:
    name: str
    codec: str
    hardware: bool
    available: bool = False
    validated: bool = False
    reason: str | None = None
    engine: str = "ffmpeg"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def codec_of(name: str) -> str | None:
    if name in CODEC_OF:
        return CODEC_OF[name]
    prefix, _, suffix = name.partition("_")
    if suffix in HARDWARE_SUFFIXES:
        return _HW_PREFIX.get(prefix)
    return None


def parse_encoders(text: str) -> list[Encoder]:
    """Video encoders of interest from `ffmpeg -encoders` output."""
    found: list[Encoder] = []
    for line in text.splitlines():
        match = _ENCODER_LINE.match(line)
        if not match:
            continue
        name = match.group(1)
        codec = codec_of(name)
        if codec is None:
            continue
        found.append(Encoder(name=name, codec=codec, hardware=name.partition("_")[2] in HARDWARE_SUFFIXES))
    return found


DRIVER_MISSING = re.compile(
    r"cannot load (libcuda|libnvidia|nvcuda)|libcuda\.so|libnvidia-encode|libmfx|libva\.so|driver does not support|"
    r"cannot load .*\.so|could not dynamically load|failed to load (cuda|nvenc|libva)|cuinit failed|"
    r"could not open library|va_opendriver\(\) returns -1|vagetdrivernamebyindex\(\) failed")
"""Phrases (lower case) that mean the device may be there but its user-space driver library is not."""

NO_DEVICE = re.compile(
    r"no nvenc capable devices|no device available|no capable devices|device creation failed|"
    r"failed to (initialise|initialize|open|create) .*(device|vaapi|session|context|display)|no such file or directory|"
    r"cannot open .*dri|unsupported device|mfx session|no va display|could not find a valid device|"
    r"no hw device|device not found|could not open (the )?device|no cuda.capable device")
"""Phrases (lower case) that mean there is no usable device for this encoder here."""


def classify_failure(stderr: str, returncode: int) -> str:
    """Why a test encode failed, in the words a user can act on."""
    text = stderr.lower()
    if "unknown encoder" in text or "encoder not found" in text:
        return "unknown encoder"
    if DRIVER_MISSING.search(text):
        return "driver library missing"
    if NO_DEVICE.search(text):
        return "no device"
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    return f"test encode failed (exit {returncode}): {last[:200]}"


def test_encode_argv(ffmpeg: str, encoder: Encoder) -> list[str]:
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    suffix = encoder.name.partition("_")[2]
    if suffix == "vaapi":
        argv += ["-vaapi_device", os.environ.get("FFRTMP_VAAPI_DEVICE", "/dev/dri/renderD128")]
    argv += ["-f", "lavfi", "-i", "testsrc2=size=256x144:rate=10", "-t", "0.3"]
    if suffix == "vaapi":
        argv += ["-vf", "format=nv12,hwupload"]
    argv += ["-c:v", encoder.name, "-f", "null", "-"]
    return argv


def validate(ffmpeg: str, encoder: Encoder, timeout: float = VALIDATION_TIMEOUT) -> Encoder:
    try:
        done = run_quiet(test_encode_argv(ffmpeg, encoder), timeout)
    except subprocess.TimeoutExpired:
        encoder.available, encoder.validated, encoder.reason = False, True, f"timeout after {timeout:g}s"
        return encoder
    except OSError as exc:
        encoder.available, encoder.validated, encoder.reason = False, True, f"cannot run ffmpeg: {exc}"
        return encoder
    encoder.validated = True
    encoder.available = done.returncode == 0
    encoder.reason = None if encoder.available else classify_failure(done.stderr, done.returncode)
    return encoder


def rank(encoder: Encoder) -> tuple[int, int]:
    """Sort key: hardware before software, then the preferred order within each (per engine)."""
    if encoder.engine == "gstreamer":
        return gst_elements.rank(encoder.name)
    if encoder.hardware:
        return (0, PRIORITY.get(encoder.name.partition("_")[2], 99))
    return (1, SOFTWARE_ORDER.index(encoder.name) if encoder.name in SOFTWARE_ORDER else 99)


def detect(ffmpeg: str | None, *, timeout: float = VALIDATION_TIMEOUT) -> list[Encoder]:
    """Every video encoder FFmpeg lists, each validated by a test encode (in parallel), best first."""
    if ffmpeg is None:
        return []
    try:
        listing = run_quiet([ffmpeg, "-hide_banner", "-encoders"], timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return []
    encoders = parse_encoders(listing.stdout)
    with ThreadPoolExecutor(max_workers=4) as pool:
        checked = list(pool.map(lambda e: validate(ffmpeg, e, timeout), encoders))
    return sorted(checked, key=rank)


def engine_of(info: dict[str, Any]) -> str:
    """The engine an encoder map entry belongs to (entries from before GStreamer support carry none)."""
    engine = info.get("engine")
    return engine if isinstance(engine, str) else "ffmpeg"


def best_for(codec: str, encoders: dict[str, dict[str, Any]], engine: str = "ffmpeg") -> str | None:
    """The `engine` encoder a job that asks for `codec` (or names an encoder) should use here."""
    info = encoders.get(codec)
    if info is not None:
        return codec if info.get("available") and engine_of(info) == engine else None
    usable = [Encoder(**{**{k: v for k, v in e.items() if k in Encoder.__dataclass_fields__}, "name": name})
              for name, e in encoders.items()
              if e.get("available") and e.get("codec") == codec and engine_of(e) == engine]
    return min(usable, key=rank).name if usable else None
