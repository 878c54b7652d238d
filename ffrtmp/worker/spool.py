"""Results a stopping worker could not deliver, kept on disk for the next start of the same worker.

One JSON file per RESULT body under `WORK_DIR/undelivered/NAME/`, written when the worker exits with
results unacknowledged, read back at the next start (same `--name`, same `--work-dir`) and removed once the
master acknowledges them. The master decides what they are still worth: a result for an attempt it has
given away is acknowledged and ignored, like any late result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ffrtmp.errors import ProtocolError
from ffrtmp.protocol import Kind, decode, encode

log = logging.getLogger("ffrtmp.worker")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ResultSpool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job: str, attempt: int) -> Path:
        return self.directory / f"{_SAFE.sub('_', job)[:128]}.{attempt}.json"

    def save(self, bodies: list[dict[str, Any]]) -> None:
        """Write each body (atomically: a crash leaves the old file or the new one, never half of one)."""
        if not bodies:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for body in bodies:
            path = self._path(body["job"], body["attempt"])
            partial = path.with_suffix(".tmp")
            partial.write_text(json.dumps(body))
            os.replace(partial, path)

    def load(self) -> list[dict[str, Any]]:
        """The bodies kept by an earlier run; a file that is not a valid RESULT is skipped with a warning."""
        bodies = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                body = json.loads(path.read_text())
                if not isinstance(body, dict):
                    raise ValueError("not an object")
                decode(encode(Kind.RESULT, body))  # the same checks as a RESULT off the wire
            except (OSError, ValueError, ProtocolError) as exc:
                log.warning("ignored %s: not a result this worker kept (%s)", path, exc)
                continue
            bodies.append(body)
        return bodies

    def remove(self, job: str, attempt: int) -> None:
        with contextlib.suppress(OSError):
            self._path(job, attempt).unlink()
