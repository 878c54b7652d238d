"""Which engine runs a job: the one it names, or for `auto` the original's rule with a usability check.

The original chose GStreamer for the live queue and for RTMP output whenever `gst-launch-1.0` existed, even
when it had no encoder for the job's codec. Here GStreamer is chosen for those jobs only when it has a
usable element for the codec (and, for an RTMP stream, a codec FLV can carry); otherwise FFmpeg, and
GStreamer again as the last resort when only it can encode the codec at all.
"""

from __future__ import annotations

from typing import Any

from ffrtmp.worker.encoders import best_for
from ffrtmp.worker.engines import is_stream
from ffrtmp.worker.engines.gstreamer import STREAMABLE_CODECS


def choose_engine(spec: dict[str, Any], encoders: dict[str, dict[str, Any]], *, ffmpeg: bool,
                  gstreamer: bool) -> str:
    """`ffmpeg`/`gstreamer` say whether each program is installed here; `encoders` is the validated map."""
    engine = str(spec["engine"])
    if engine != "auto":
        return engine
    params = spec["params"]
    codec = str(params["codec"])
    streaming = is_stream(params.get("output"))
    gst_encoder = best_for(codec, encoders, "gstreamer") if gstreamer else None
    gst_ok = gst_encoder is not None and (not streaming or encoders[gst_encoder]["codec"] in STREAMABLE_CODECS)
    ffmpeg_ok = ffmpeg and best_for(codec, encoders, "ffmpeg") is not None
    if gst_ok and (spec.get("queue") == "live" or streaming):
        return "gstreamer"
    if ffmpeg_ok or not gst_ok:
        return "ffmpeg"
    return "gstreamer"
