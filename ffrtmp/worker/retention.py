"""Output retention on a worker: published outputs older than `--output-retention` and stray partial files go.

Only the work dir's `outputs/` tree is swept (operators' `--output-root`s are theirs to manage). A partial file
is stray once it has not been written for `STRAY_PARTIAL_AGE` (an encode writes its partial all the time; one
left untouched belongs to an attempt that died with its worker) and is not one this worker still holds.
Empty job and tenant directories go once they are that old too (a fresh one is about to be written into).
Ages come from file modification times against the `now` given, so tests pin the clock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ffrtmp.worker.outputs import PARTIAL

STRAY_PARTIAL_AGE = 3600.0
"""A partial file not written for this long, and not held by this worker, is left over from a dead attempt."""

SWEEP_INTERVAL = 600.0
"""How often a worker sweeps its outputs (the first sweep runs at start)."""


@dataclass
class Swept:
    outputs: int = 0
    partials: int = 0
    bytes: int = 0


def sweep(outputs: Path, now: float, retention: float, keep: Collection[str] = (),
          stray_after: float = STRAY_PARTIAL_AGE) -> Swept:
    """Delete what is past its age under `outputs` (`retention` 0: keep published outputs for good); `keep`
    names partial files still in use."""
    swept = Swept()
    if not outputs.is_dir():
        return swept
    stray_after = min(stray_after, retention) if retention > 0 else stray_after
    emptied: set[str] = set()
    """Folders this pass deleted from: their own time is now fresh, yet nothing is about to write there."""
    for folder, _dirs, files in os.walk(outputs, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            partial = PARTIAL.search(name) is not None
            if path in keep:
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue  # gone meanwhile
            age = now - info.st_mtime
            if (age > stray_after) if partial else (retention > 0 and age > retention):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    emptied.add(folder)
                    swept.bytes += info.st_size
                    if partial:
                        swept.partials += 1
                    else:
                        swept.outputs += 1
        if folder != str(outputs):
            with contextlib.suppress(OSError):
                if not os.listdir(folder) and (folder in emptied or now - os.lstat(folder).st_mtime > stray_after):
                    os.rmdir(folder)
                    emptied.add(os.path.dirname(folder))
    return swept


class RetentionSweeper:
    """Runs `sweep` every `SWEEP_INTERVAL` in a background thread, one at a time: a big outputs tree must not
    hold up the worker's loop (heartbeats)."""

    def __init__(self, outputs: Path, retention: float, in_use: Callable[[], set[str]],
                 interval: float = SWEEP_INTERVAL) -> None:
        self.outputs = outputs
        self.retention = retention
        self.in_use = in_use
        self.interval = interval
        self.next_at: float | None = None
        self.thread: threading.Thread | None = None
        self.last: Swept | None = None

    def due(self, mono: float) -> bool:
        """Whether a sweep should start now (monotonic clock); schedules the next."""
        if self.next_at is not None and mono < self.next_at:
            return False
        if self.thread is not None and self.thread.is_alive():
            return False
        self.next_at = mono + self.interval
        return True

    def maybe_start(self, mono: float, wall: float) -> None:
        if not self.due(mono):
            return
        keep = self.in_use()
        self.thread = threading.Thread(target=self._run, args=(wall, keep), name="output-retention", daemon=True)
        self.thread.start()

    def _run(self, wall: float, keep: set[str]) -> None:
        self.last = sweep(self.outputs, wall, self.retention, keep)
