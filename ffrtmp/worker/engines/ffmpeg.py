"""The FFmpeg engine: file transcodes and live RTMP pushes, with the original's flags.

File mode: `-i INPUT -c:v ENC -b:v BR -maxrate BR -bufsize 2*BR -g 2*FPS OUT`.
RTMP mode adds `-re` (real time), AAC audio, `-tune zerolatency` (x264/x265) and `-f flv`. Progress comes
from `-progress pipe:1`. Inputs are opened with sources.ffmpeg_input's protocol and demuxer allow-lists, and
file outputs are given as `file:` + absolute path.
"""

from __future__ import annotations

from ffrtmp.worker.engines import Command, JobContext
from ffrtmp.worker.sources import ffmpeg_input, file_url

CONTAINER_FOR_CODEC = {"h264": ".mp4", "h265": ".mp4", "vp9": ".webm", "av1": ".mp4"}


def software_preset(cpu_count: int) -> str:
    """x264/x265 preset by thread count, as in the original: ≥8 fast, 4–7 veryfast, fewer ultrafast."""
    if cpu_count >= 8:
        return "fast"
    if cpu_count >= 4:
        return "veryfast"
    return "ultrafast"


def encoder_options(encoder: str, preset: str | None, cpu_count: int, live: bool = False) -> list[str]:
    """Speed options that make sense for each encoder family; live streams add the original's low latency."""
    family = encoder.partition("_")[2] if "_" in encoder and not encoder.startswith("lib") else encoder
    if encoder in ("libx264", "libx265", "libx264rgb"):
        return ["-preset", preset or software_preset(cpu_count), *(["-tune", "zerolatency"] if live else [])]
    if family == "nvenc":
        return ["-preset", preset or "fast", "-rc", "vbr", *(["-zerolatency", "1"] if live else [])]
    if family == "qsv":
        return ["-preset", preset or "veryfast"]
    if encoder == "libvpx-vp9":
        return ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"]
    if encoder == "libsvtav1":
        return ["-preset", preset or "10"]
    if encoder == "libaom-av1":
        return ["-cpu-used", "8", "-usage", "realtime", "-row-mt", "1"]
    if encoder == "librav1e":
        return ["-speed", "10"]
    return ["-preset", preset] if preset else []


def rate_control(encoder: str, kbps: int) -> list[str]:
    """Constrained bitrate (maxrate = bitrate, 2 s of buffer); SVT-AV1 refuses a maxrate equal to the target."""
    if encoder == "libsvtav1":
        return ["-b:v", f"{kbps}k"]
    return ["-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k"]


def build(ctx: JobContext) -> Command:
    assert ctx.ffmpeg is not None and ctx.encoder is not None and ctx.input_path is not None
    params = ctx.params
    kbps = int(str(params["bitrate"]).rstrip("k"))
    fps = int(params["fps"])
    argv = [ctx.ffmpeg, "-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1"]
    vaapi = ctx.encoder.endswith("_vaapi")
    if vaapi:
        argv += ["-vaapi_device", "/dev/dri/renderD128"]
    if ctx.streaming:
        argv += ["-re"]
    if ctx.spec.get("_loop_input"):
        argv += ["-stream_loop", "-1"]
    argv += [*ffmpeg_input(ctx.input_path), "-t", f"{float(params['duration']):g}", "-map", "0:v:0"]
    if ctx.streaming:
        argv += ["-map", "0:a:0?"]
    argv += ["-c:v", ctx.encoder, *encoder_options(ctx.encoder, params.get("preset"), ctx.cpu_count, ctx.streaming)]
    argv += [*rate_control(ctx.encoder, kbps), "-g", str(2 * fps), "-r", str(fps)]
    if vaapi:
        argv += ["-vf", f"scale={params['resolution'].replace('x', ':')},format=nv12,hwupload"]
    else:
        argv += ["-s", params["resolution"], "-pix_fmt", "yuv420p"]
    if ctx.streaming:
        argv += ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-f", "flv", ctx.output]
    else:
        argv += ["-an", file_url(ctx.output)]  # never read as a protocol, whatever the name
    return Command(argv=argv, progress_format="ffmpeg", encoder=ctx.encoder)
