"""The GStreamer engine: `gst-launch-1.0 -e` pipelines that push RTMP streams or write files.

The generated test source is made in the pipeline itself (videotestsrc with a scrolling pattern, plus an
audiotestsrc sine for streams), not decoded from FFmpeg's cached file: it needs only gst-plugins-base,
has no 120 s cap, and `num-buffers` makes each source send end-of-stream after exactly the job's duration,
so a live push of D seconds ends by itself and completes. For streams the sources are live (`is-live`),
which paces them in real time like FFmpeg's `-re`.

A given input is decoded (`filesrc ! decodebin`, `uridecodebin` for URLs), converted to the job's size and
frame rate, and cut at the duration (see cut_after). A stream also carries the input's audio, resampled to
48 kHz stereo AAC and cut at the same duration, when the runner found an audio track: a branch for an audio
pad that never appears would hold the muxer forever. Files keep the video only, as FFmpeg's file mode does.
`rtmpsink` syncs to the clock, so a file pushed to RTMP goes out in real time too.

`progressreport` after the source prints the stream position each second (see progress.GstProgress).
Every token is its own argv entry and every path or URL is quoted, so spaces, `!` or quotes in a name stay
part of the value and can never add elements to the pipeline.
"""

from __future__ import annotations

import math
from pathlib import PurePath

from ffrtmp.worker.engines import Command, JobContext, UnsupportedJob
from ffrtmp.worker.gst_elements import ELEMENTS, PARSER_FOR_CODEC, EncodeSettings

STREAMABLE_CODECS = ("h264",)
"""What `flvmux` (RTMP) carries in GStreamer 1.22."""

MUXER_FOR_SUFFIX = {".mp4": "mp4mux", ".m4v": "mp4mux", ".mov": "qtmux", ".mkv": "matroskamux",
                    ".webm": "webmmux", ".flv": "flvmux", ".ts": "mpegtsmux"}

AUDIO_BUFFERS_PER_SECOND = 50
"""Audio goes in 20 ms buffers (960 samples at 48 kHz), so counting buffers cuts the track exactly."""
AUDIO_CAPS = "audio/x-raw,rate=48000,channels=2"
DECODER = "in"
"""The name of a given input's decoder, whose audio pad the audio branch links from."""

PATTERN = ("pattern=smpte", "horizontal-speed=4")
"""Colour bars that scroll 4 pixels a frame: every frame differs, so the encoder does real work."""


def quoted(value: str) -> str:
    """A property value as gst-launch reads it back verbatim: in double quotes, with \\ and " escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def video_caps(resolution: str, fps: int) -> str:
    width, height = resolution.split("x")
    return f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"


def video_source(ctx: JobContext, caps: str, frames: int) -> list[str]:
    """Tokens up to raw video of the job's size and rate, ending after `frames` frames."""
    if ctx.input_path is None:
        live = "true" if ctx.streaming else "false"
        return ["videotestsrc", f"is-live={live}", f"num-buffers={frames}", *PATTERN, "!", caps]
    if ctx.input_path.lower().startswith(("http://", "https://")):
        # souphttpsrc rather than uridecodebin's: a redirect could point inside the worker's networks
        decode = ["souphttpsrc", f"location={quoted(ctx.input_path)}", "automatic-redirect=false", "!", "decodebin"]
    elif "://" in ctx.input_path:
        decode = ["uridecodebin", f"uri={quoted(ctx.input_path)}"]
    else:
        decode = ["filesrc", f"location={quoted(ctx.input_path)}", "!", "decodebin"]
    if carries_input_audio(ctx):
        decode.append(f"name={DECODER}")  # the audio branch starts from its other pad
    return [*decode, "!", "videoconvert", "!", "videoscale", "!", "videorate", "!", caps, "!", *cut_after(frames)]


def cut_after(frames: int) -> list[str]:
    """Pass exactly `frames` frames, then end the stream.

    `identity eos-after` refuses the frame after the last, but only that one. The queue before it then
    refuses all that upstream sends (also the frames videorate adds at end of stream to fill out the
    input's length), except one frame that may already be waiting for room in the queue: the second
    identity refuses that one.
    """
    refuse = f"eos-after={frames + 1}"
    return ["queue", "!", "identity", refuse, "!", "identity", refuse]


def carries_input_audio(ctx: JobContext) -> bool:
    return ctx.streaming and ctx.input_path is not None and ctx.input_audio and ctx.audio_encoder is not None


def audio_branch(ctx: JobContext, duration: float) -> list[str]:
    """A stream's audio, when an AAC element is installed: a sine for a generated source (the original's `sine`
    input), or the given input's own track, split into 20 ms buffers so that it ends at the duration too."""
    if not ctx.streaming or ctx.audio_encoder is None:
        return []
    buffers = max(1, math.ceil(duration * AUDIO_BUFFERS_PER_SECOND))
    encode = ["audioconvert", "!", ctx.audio_encoder, "!", "aacparse", "!", "queue", "!", "mux."]
    if ctx.input_path is None:
        return ["audiotestsrc", "is-live=true", "wave=sine", "freq=440", "samplesperbuffer=960",
                f"num-buffers={buffers}", "!", AUDIO_CAPS, "!", *encode]
    if not carries_input_audio(ctx):
        return []
    return [f"{DECODER}.", "!", "audioconvert", "!", "audioresample", "!", AUDIO_CAPS, "!", "audiobuffersplit",
            f"output-buffer-duration=1/{AUDIO_BUFFERS_PER_SECOND}", "!", *cut_after(buffers), "!", *encode]


def sink(ctx: JobContext) -> list[str]:
    if ctx.streaming:
        return ["flvmux", "name=mux", "streamable=true", "!", "rtmpsink", f"location={quoted(ctx.output)}"]
    muxer = MUXER_FOR_SUFFIX.get(PurePath(ctx.output).suffix.lower(), "matroskamux")
    return [muxer, "name=mux", "!", "filesink", f"location={quoted(ctx.output)}"]


def build(ctx: JobContext) -> Command:
    assert ctx.gst_launch is not None and ctx.encoder is not None
    params = ctx.params
    element = ELEMENTS[ctx.encoder]
    if ctx.streaming and element.codec not in STREAMABLE_CODECS:
        raise UnsupportedJob(f"an RTMP stream from GStreamer carries {', '.join(STREAMABLE_CODECS)} only, not "
                             f"{element.codec} (use --engine ffmpeg or --codec h264)")
    fps = int(params["fps"])
    duration = float(params["duration"])
    settings = EncodeSettings(kbps=int(str(params["bitrate"]).rstrip("k")), gop=2 * fps, preset=params.get("preset"),
                              cpu_count=ctx.cpu_count, live=ctx.streaming)
    argv = [ctx.gst_launch, "-e", *video_source(ctx, video_caps(params["resolution"], fps),
                                                max(1, round(duration * fps)))]
    argv += ["!", "progressreport", "name=progress", "update-freq=1", "silent=false", "format=time",
             "!", "videoconvert", "!", element.name, *element.properties(settings)]
    parser = PARSER_FOR_CODEC.get(element.codec)
    if parser:
        argv += ["!", parser]
    argv += ["!", "queue", "!", "mux.", *audio_branch(ctx, duration), *sink(ctx)]
    return Command(argv=argv, progress_format="gstreamer", encoder=element.name)
