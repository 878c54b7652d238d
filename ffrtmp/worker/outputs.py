"""Where an attempt writes its file output, and how that file becomes the job's output.

Layout: a job's files live in `WORK_DIR/outputs/TENANT/JOB_ID/`, a directory no other job can name (a relative
`--output` is taken inside it, and an absolute one must lie under an operator's `--output-root`, never in the
work dir). Each attempt writes its own partial file beside the final name, `NAME.JOB_ID.attempt-N.partial.EXT`
(the suffix stays last: FFmpeg and GStreamer pick the container from it), and deletes only that file. The final
name is published (an atomic rename) only once the master has accepted the attempt's result, so a stale attempt
(a zombie twin, a partitioned worker told to cancel) can neither delete nor replace the current one's output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.worker.engines import is_stream

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A tenant or job id used as a directory name: no separators, no dots alone."""

PARTIAL = re.compile(r"\.[A-Za-z0-9._-]+\.attempt-(\d+)\.partial\.[A-Za-z0-9]+$")
"""What every attempt's partial file name ends with (retention recognises stray ones by it)."""

DEFAULT_TENANT = "default"


class OutputRefused(ValueError):
    """An output this worker will not write (the message says why and what to do)."""


@dataclass(frozen=True)
class OutputPlan:
    """Where one attempt writes (`partial`) and the name it is published under (`final`)."""

    final: str
    partial: str


def job_dir(outputs: Path, tenant: str | None, job_id: str) -> Path:
    """`outputs/TENANT/JOB_ID`: refuses names that would leave `outputs` (a hostile spec)."""
    tenant = tenant or DEFAULT_TENANT
    for what, value in (("tenant", tenant), ("job id", job_id)):
        if not _SAFE_PART.match(value) or value in (".", ".."):
            raise OutputRefused(f"{what} {value!r} cannot name an output directory")
    return outputs / tenant / job_id


def resolve_output(work_dir: Path, output_roots: tuple[Path, ...], tenant: str | None, job_id: str,
                   output: str | None, container: str) -> str:
    """The final path (or stream URL) of a job's output; makes the directory it goes in."""
    if output and is_stream(output):
        return output
    own = job_dir(work_dir / "outputs", tenant, job_id)
    allowed: tuple[Path, ...]
    if not output:
        target, allowed = own / f"{job_id}{container}", (own.resolve(),)
    elif Path(output).is_absolute():
        target, allowed = Path(output), tuple(root.resolve() for root in output_roots)
    else:
        target, allowed = own / output, (own.resolve(),)
    resolved = target.resolve()
    if not any(root in resolved.parents for root in allowed):
        where = "this worker's output roots (start the worker with --output-root to allow it)" \
            if output and Path(output).is_absolute() else "the job's own output directory"
        raise OutputRefused(f"output {output!r} is outside {where}")
    work = work_dir.resolve()
    if Path(output or "").is_absolute() and (resolved == work or work in resolved.parents):
        raise OutputRefused(f"output {output!r} names a path in the work dir, where other jobs' files are: give a "
                            "path relative to the job's output directory instead")
    resolved.parent.mkdir(parents=True, exist_ok=True)
    if own in target.parents:
        os.utime(own)  # fresh: retention never removes a job directory about to be written into
    return str(resolved)


def plan(final: str, job_id: str, attempt: int) -> OutputPlan:
    """The attempt's own partial file, beside the final name (same filesystem: the rename is atomic)."""
    path = Path(final)
    partial = path.with_name(f"{path.stem}.{job_id}.attempt-{attempt}.partial{path.suffix}")
    return OutputPlan(final=final, partial=str(partial))


def publish(partial: str, final: str) -> None:
    """Give the accepted attempt's file its final name (atomic; replaces an older published file)."""
    os.replace(partial, final)


def discard(partial: str | None) -> None:
    """Delete an attempt's own partial file, if it is still there; never anything else."""
    if partial and PARTIAL.search(partial):
        with contextlib.suppress(OSError):
            os.unlink(partial)


def space_note(path: str) -> str:
    """How much room is left where `path` is written (for a 'No space left on device' error)."""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"{folder} is full"
    return f"{folder} has {free / 2**20:.1f} MiB free"
