"""Refusing to start an attempt on a nearly full disk (the original checked /tmp at 95%).

An encode that fills the disk fails late, leaves a truncated file and can take the rest of the machine
with it; failing up front names the work dir and how full it is, so the user knows what to free.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MAX_USED_PERCENT = 95.0
"""An attempt does not start when the work dir's filesystem is fuller than this."""

MIN_FREE_BYTES = 200 * 2**20
"""… or has less than this free (200 MiB)."""


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent (the work dir may not exist before the first job)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def space_problem(work_dir: Path) -> str | None:
    """None when there is room, else a message naming the work dir and how full its filesystem is."""
    try:
        usage = shutil.disk_usage(existing_ancestor(work_dir))
    except OSError as exc:
        return f"cannot check free space in the work dir {work_dir}: {exc}"
    used = 100.0 * (usage.total - usage.free) / usage.total if usage.total else 100.0
    if used <= MAX_USED_PERCENT and usage.free >= MIN_FREE_BYTES:
        return None
    return (f"the work dir {work_dir} is on a filesystem {used:.1f}% full with {usage.free / 2**20:.0f} MiB free "
            f"(an attempt needs at most {MAX_USED_PERCENT:g}% used and {MIN_FREE_BYTES // 2**20} MiB free): free "
            "some space or start the worker with another --work-dir")
