"""Generated test sources, cached by their parameters in the work dir.

Like the original: testsrc2 with noise at the job's resolution, fps and duration, encoded once with a
fast encoder; later jobs with the same parameters reuse the file. A sine audio track is added for streams.
Only the worker writes here: a file is written under a temporary name and renamed when complete (temporary
files left by a worker that died mid-write are removed by the next generation), and no job output may name
this directory (the runner refuses it), so a job can neither name nor poison a cached source.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import threading
from pathlib import Path

from ffrtmp.errors import FfrtmpError
from ffrtmp.worker.childenv import child_environment
from ffrtmp.worker.sources import ffmpeg_input, file_url
from ffrtmp.worker.tools import run_quiet

GENERATE_TIMEOUT_FACTOR = 20.0
MAX_GENERATED_SECONDS = 120.0
"""Generated sources are capped (the original capped at 120 s); longer jobs loop the source."""

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class InputError(FfrtmpError):
    """The source could not be prepared."""


def generated_path(inputs_dir: Path, resolution: str, fps: int, duration: float, audio: bool) -> Path:
    """Named by every parameter and by a digest of the command that makes it: a change to the command (or a
    file an older version left, or one written there by anything else) is never taken for this source."""
    seconds = min(duration, MAX_GENERATED_SECONDS)
    recipe = generate_argv("ffmpeg", Path("out.mp4"), resolution, fps, duration, audio)
    digest = hashlib.sha256("\0".join(recipe).encode()).hexdigest()[:12]
    return inputs_dir / f"testsrc2_{resolution}_{fps}fps_{seconds:g}s{'_a' if audio else ''}_{digest}.mp4"


def generate_argv(ffmpeg: str, target: Path, resolution: str, fps: int, duration: float, audio: bool) -> list[str]:
    seconds = f"{min(duration, MAX_GENERATED_SECONDS):g}"
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={resolution}:rate={fps}"]
    if audio:
        argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    argv += ["-vf", "noise=alls=10:allf=u,format=yuv420p", "-t", seconds,
             "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-g", str(2 * fps)]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "128k"]
    return argv + ["-f", "mp4", file_url(str(target))]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(inputs_dir: Path) -> list[Path]:
    """Delete `.NAME.PID.THREAD.mp4` files whose writing process is gone; returns what was removed."""
    removed = []
    for partial in inputs_dir.glob(".*.mp4"):
        fields = partial.name.rsplit(".", 3)
        if len(fields) == 4 and fields[1].isdigit() and not _pid_alive(int(fields[1])):
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
                removed.append(partial)
    return removed


def ensure_generated(ffmpeg: str, inputs_dir: Path, resolution: str, fps: int, duration: float,
                     audio: bool = False) -> Path:
    """The cached source for these parameters, generated (atomically, once per key) when missing."""
    target = generated_path(inputs_dir, resolution, fps, duration, audio)
    with _locks_guard:
        lock = _locks.setdefault(target, threading.Lock())
    with lock:
        if target.exists() and target.stat().st_size > 0:
            return target
        inputs_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(inputs_dir)
        partial = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.mp4")
        argv = generate_argv(ffmpeg, partial, resolution, fps, duration, audio)
        timeout = 60 + GENERATE_TIMEOUT_FACTOR * min(duration, MAX_GENERATED_SECONDS)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False, env=child_environment())
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise InputError(f"generating the test source took longer than {timeout:.0f}s") from None
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise InputError(f"generating the test source failed: {done.stderr.strip()[-500:]}")
        os.replace(partial, target)
        return target


PROBE_TIMEOUT = 15.0
"""How long `ffmpeg -i` may take to tell whether a given input has audio (a URL may be slow to open)."""
URL_PROBE = ["-analyzeduration", "3000000", "-probesize", "2000000"]
"""A live URL is read for at most ~3 s of media to find its streams."""
_AUDIO_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: Audio: ([A-Za-z0-9_]+)", re.MULTILINE)


def audio_codec(ffmpeg: str | None, source: str) -> tuple[str | None, str | None]:
    """The codec of `source`'s first audio stream (None: it has none), and when that cannot be told, why.

    Read from `ffmpeg -i`'s stream listing, not ffprobe: the bundled FFmpeg (imageio-ffmpeg) has no ffprobe.
    """
    if ffmpeg is None:
        return None, "ffmpeg is not installed"
    argv = [ffmpeg, "-hide_banner", "-nostdin", *(URL_PROBE if "://" in source else []), *ffmpeg_input(source)]
    try:
        done = run_quiet(argv, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"probing the input failed: {exc}"
    # With no output named ffmpeg exits 1 even when it read the input; the "Input #0" listing says it did.
    if "Input #0" not in done.stderr:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return None, f"probing the input failed: {' / '.join(lines[-2:])[-300:] or f'exit {done.returncode}'}"
    match = _AUDIO_STREAM.search(done.stderr)
    return (match.group(1) if match else None), None
