"""Engines turn a job into a command line (or, for `null`, into nothing at all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Command:
    """What the runner executes: an argv list (never a shell string) and how to read its progress."""

    argv: list[str]
    progress_format: str = "ffmpeg"
    """`ffmpeg`: key=value blocks on stdout (`-progress pipe:1`); `none`: no progress."""
    env: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None


@dataclass
class JobContext:
    """Everything an engine needs to build one attempt's command."""

    job_id: str
    attempt: int
    spec: dict[str, Any]
    work_dir: Path
    input_path: str
    output: str
    """A resolved file path or a stream URL."""
    encoder: str | None
    ffmpeg: str | None
    cpu_count: int = 1

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.spec["params"]
        return params

    @property
    def streaming(self) -> bool:
        return self.output.lower().startswith(("rtmp://", "rtmps://"))
