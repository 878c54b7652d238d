"""Which GStreamer encoder elements this worker can really use.

`gst-inspect-1.0` lists what the plugin registry holds, which can be stale (a registry cached on a machine
with a GPU) or can hold an element whose device is busy or gone. So every listed element we know how to
drive is checked with a tiny test pipeline under a timeout, using the same properties a job would, and must
produce encoded bytes. Hardware elements that are not listed at all are still reported, unavailable, with
the reason: GPU plugins (nvcodec, qsv, va) register their encoders only for a device they can open, so an
installed plugin without its element means "no device", and a missing plugin names the package to install.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ffrtmp.worker.encoders import DRIVER_MISSING, NO_DEVICE, VALIDATION_TIMEOUT, Encoder, rank
from ffrtmp.worker.gst_elements import AAC_ENCODERS, ELEMENTS, EncodeSettings, GstElement
from ffrtmp.worker.tools import find_gst_inspect, run_quiet

ENGINE = "gstreamer"
TEST_CAPS = "video/x-raw,format=I420,width=256,height=144,framerate=10/1"
TEST_SETTINGS = EncodeSettings(kbps=200, gop=20)

_LISTING_LINE = re.compile(r"^(?P<plugin>[\w.-]+):\s+(?P<element>[\w.-]+): .*$")
_NOISE = ("additional debug info:", "error: pipeline doesn't want", "setting pipeline to", "freeing pipeline")


def parse_listing(text: str) -> dict[str, str]:
    """element → plugin, from the output of `gst-inspect-1.0` with no arguments."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _LISTING_LINE.match(line.strip())
        if match:
            found[match.group("element")] = match.group("plugin")
    return found


def encoder_for(element: GstElement) -> Encoder:
    return Encoder(name=element.name, codec=element.codec, hardware=element.hardware, engine=ENGINE)


def test_pipeline_argv(gst_launch: str, element: GstElement) -> list[str]:
    """Five small frames through the element with a job's properties; the encoded bytes go to stdout."""
    return [gst_launch, "-q", "videotestsrc", "num-buffers=5", "!", TEST_CAPS, "!", "videoconvert", "!",
            element.name, *element.properties(TEST_SETTINGS), "!", "fdsink", "fd=1"]


def _last_meaningful_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if not line.lower().startswith(_NOISE)]
    return (useful or lines or [""])[-1][:200]


def classify_failure(stderr: str, returncode: int) -> str:
    """Why a test pipeline failed, in the words a user can act on."""
    text = stderr.lower()
    if "no element" in text:
        return "unknown element"
    if "could not set property" in text or "no property" in text:
        return f"property not supported by this version: {_last_meaningful_line(stderr)}"
    if DRIVER_MISSING.search(text):
        return "driver library missing"
    if NO_DEVICE.search(text):
        return "no device"
    return f"test pipeline failed (exit {returncode}): {_last_meaningful_line(stderr)}"


def validate(gst_launch: str, encoder: Encoder, timeout: float = VALIDATION_TIMEOUT) -> Encoder:
    encoder.validated = True
    try:
        done = subprocess.run(test_pipeline_argv(gst_launch, ELEMENTS[encoder.name]), capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        encoder.available, encoder.reason = False, f"timeout after {timeout:g}s"
        return encoder
    except OSError as exc:
        encoder.available, encoder.reason = False, f"cannot run gst-launch-1.0: {exc}"
        return encoder
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        encoder.available, encoder.reason = False, classify_failure(stderr, done.returncode)
    elif not done.stdout:
        encoder.available = False
        encoder.reason = f"test pipeline produced no encoded data: {_last_meaningful_line(stderr)}"
    else:
        encoder.available, encoder.reason = True, None
    return encoder


def missing_reason(element: GstElement, plugin_installed: bool) -> str:
    """Why a hardware element is not listed: its plugin found no device, or the plugin is not installed."""
    if plugin_installed:
        return f"no device (plugin {element.plugin} is installed but offers no {element.name})"
    return f"not installed (plugin {element.plugin}, package {element.package})"


@lru_cache(maxsize=4)
def audio_encoder(gst_launch: str | None) -> str | None:
    """The first installed AAC element (for a stream's audio), looked up once per worker."""
    return next((name for name in AAC_ENCODERS if element_installed(gst_launch, name)), None)


AUDIO_DECODERS = {
    "aac": ("avdec_aac", "fdkaacdec", "faad"), "mp3": ("mpg123audiodec", "avdec_mp3"), "mp2": ("avdec_mp2float",),
    "opus": ("opusdec", "avdec_opus"), "vorbis": ("vorbisdec",), "flac": ("flacdec", "avdec_flac"),
    "ac3": ("avdec_ac3", "a52dec"), "eac3": ("avdec_eac3",), "dts": ("avdec_dca", "dtsdec"),
    "alac": ("avdec_alac",), "amr_nb": ("amrnbdec", "avdec_amrnb"),
}
"""GStreamer elements that decode each audio codec (by ffprobe's name); PCM needs none."""


@lru_cache(maxsize=64)
def element_installed(gst_launch: str | None, name: str) -> bool:
    """Whether GStreamer beside `gst_launch` has the element `name` (asked once per worker)."""
    gst_inspect = find_gst_inspect(gst_launch)
    return gst_inspect is not None and plugin_installed(gst_inspect, name)


def audio_problem(gst_launch: str | None, codec: str) -> str | None:
    """Why a GStreamer stream cannot carry an input's `codec` track, or None when it can.

    The decoder must be there: `decodebin` exposes no pad for a codec it cannot decode, and a branch waiting
    for that pad would hold the muxer forever. `audiobuffersplit` (gst-plugins-bad) cuts the track.
    """
    if not codec.startswith("pcm_") and not any(element_installed(gst_launch, name)
                                                for name in AUDIO_DECODERS.get(codec, ())):
        wanted = " or ".join(AUDIO_DECODERS.get(codec, ())) or "a decoder ffrtmp knows"
        return f"GStreamer cannot decode its {codec} audio here ({wanted} is not installed)"
    if not element_installed(gst_launch, "audiobuffersplit"):
        return "audiobuffersplit (gst-plugins-bad) is not installed"
    return None


def plugin_installed(gst_inspect: str, plugin: str) -> bool:
    """True when `gst-inspect-1.0 NAME` knows the plugin (or element) NAME."""
    try:
        return run_quiet([gst_inspect, plugin], timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect(gst_inspect: str | None, gst_launch: str | None, *,
           timeout: float = VALIDATION_TIMEOUT) -> list[Encoder]:
    """Known encoder elements: listed ones validated by a test pipeline, unlisted hardware ones explained."""
    if gst_inspect is None or gst_launch is None:
        return []
    try:
        listing = run_quiet([gst_inspect], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    listed = parse_listing(listing.stdout)
    present = [encoder_for(e) for name, e in ELEMENTS.items() if name in listed]
    absent = [e for name, e in ELEMENTS.items() if name not in listed and e.hardware]
    plugins = sorted({e.plugin for e in absent})
    with ThreadPoolExecutor(max_workers=4) as pool:
        checked = list(pool.map(lambda e: validate(gst_launch, e, timeout), present))
        installed = dict(zip(plugins, pool.map(lambda p: plugin_installed(gst_inspect, p), plugins), strict=True))
    unlisted = []
    for element in absent:
        encoder = encoder_for(element)
        encoder.reason = missing_reason(element, installed[element.plugin])
        unlisted.append(encoder)
    return sorted(checked + unlisted, key=rank)
