"""Checking a finished file output before it is uploaded: its size, its SHA-256, and that it decodes to the
duration the encode says it wrote (a truncated file or a 55-byte stub never becomes a job's output).

The duration is read by decoding the whole file with `ffmpeg` (the bundled FFmpeg has no ffprobe):
`ffmpeg -i file:PATH -f null -` with `-progress pipe:1`, whose last `out_time_us` is how far decoding got.
Decoding costs far less than the encode that made the file, and it is the only check that a player could
read it to the end.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.errors import FfrtmpError
from ffrtmp.files.transfer import file_sha256
from ffrtmp.worker.progress import FfmpegProgress
from ffrtmp.worker.sources import ffmpeg_input
from ffrtmp.worker.tools import run_quiet

TOLERANCE_SECONDS = 0.5
TOLERANCE_RATIO = 0.05
"""A decoded duration within max(0.5 s, 5 %) of the expected one passes: containers round the last frame."""
DECODE_TIMEOUT_FACTOR = 2.0
DECODE_TIMEOUT_MIN = 60.0
"""Decoding may take 60 s plus twice the media's duration (decoding is many times faster than real time)."""


class OutputInvalid(FfrtmpError):
    """The output file is not what the encode should have written (the message says how)."""


@dataclass(frozen=True)
class VerifiedOutput:
    path: Path
    size: int
    sha256: str
    duration: float
    """Seconds of media decoded."""


def tolerance(expected: float) -> float:
    return max(TOLERANCE_SECONDS, TOLERANCE_RATIO * expected)


def decoded_duration(ffmpeg: str, path: Path, timeout: float) -> float:
    """Seconds of media in `path`, by decoding it all; OutputInvalid when FFmpeg cannot read it."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1",
            *ffmpeg_input(str(path)), "-f", "null", "-"]
    try:
        done = run_quiet(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OutputInvalid(f"decoding the output took longer than {timeout:g}s") from None
    except OSError as exc:
        raise OutputInvalid(f"cannot run {ffmpeg} to decode the output: {exc}") from None
    progress = FfmpegProgress(None)
    for line in done.stdout.splitlines():
        progress.feed(line)
    errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
    if done.returncode != 0 or not progress.ended:
        why = " / ".join(errors[-2:])[-300:] or f"exit {done.returncode}"
        raise OutputInvalid(f"the output does not decode: {why}")
    seconds = progress.snapshot.get("out_time")
    if not isinstance(seconds, float):
        raise OutputInvalid("decoding the output reported no duration")
    return seconds


def verify_output(ffmpeg: str, path: Path, expected_duration: float) -> VerifiedOutput:
    """The output's size, SHA-256 and decoded duration, once all three are right; else OutputInvalid."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise OutputInvalid(f"the output {path} is missing: {exc.strerror or exc}") from None
    if size == 0:
        raise OutputInvalid(f"the output {path} is empty")
    timeout = DECODE_TIMEOUT_MIN + DECODE_TIMEOUT_FACTOR * expected_duration
    seconds = decoded_duration(ffmpeg, path, timeout)
    if abs(seconds - expected_duration) > tolerance(expected_duration):
        raise OutputInvalid(f"the output decodes to {seconds:.2f}s, not the {expected_duration:.2f}s encoded "
                            f"(tolerance {tolerance(expected_duration):.2f}s): it is truncated or damaged")
    digest = file_sha256(path)
    if path.stat().st_size != size:
        raise OutputInvalid(f"the output {path} changed while it was checked")
    return VerifiedOutput(path=path, size=size, sha256=digest, duration=seconds)
