"""Engines turn a job into a command line (or, for `null`, into nothing at all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STREAM_SCHEMES = ("rtmp://", "rtmps://")


class UnsupportedJob(ValueError):
    """The engine cannot do what the job asks (e.g. an FLV stream of a codec FLV cannot carry)."""


@dataclass
class Command:
    """What the runner executes: an argv list (never a shell string) and how to read its progress."""

    argv: list[str]
    progress_format: str = "ffmpeg"
    """`ffmpeg`: key=value blocks on stdout (`-progress pipe:1`); `gstreamer`: progressreport lines."""
    env: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None


@dataclass
class JobContext:
    """Everything an engine needs to build one attempt's command."""

    job_id: str
    attempt: int
    spec: dict[str, Any]
    work_dir: Path
    input_path: str | None
    """A file or URL to read, or None for a test source the engine generates itself (GStreamer)."""
    output: str
    """A resolved file path or a stream URL."""
    encoder: str | None
    ffmpeg: str | None
    cpu_count: int = 1
    gst_launch: str | None = None
    audio_encoder: str | None = None
    """The AAC element a GStreamer stream's audio uses; None: a stream without audio."""
    input_audio: bool = False
    """The given input has an audio track, and a GStreamer stream carries it (probed by the runner)."""

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.spec["params"]
        return params

    @property
    def streaming(self) -> bool:
        return is_stream(self.output)


def is_stream(output: str | None) -> bool:
    return bool(output) and str(output).lower().startswith(STREAM_SCHEMES)
