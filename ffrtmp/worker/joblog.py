"""What a job's log and error may tell its submitter about the worker.

Every line a job's process writes goes to the submitter. Two things are taken out on the way:
- the worker's absolute work dir (it shows the layout and the user the worker runs as): it reads `WORK_DIR`;
  the programs' own paths read as their names;
- for a URL input, how exactly a connection failed (refused, timed out, the HTTP status): those answers
  make a worker a port and service scanner for whoever submits. The job still fails, with a summary.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

WORK_DIR = "WORK_DIR"
NETWORK_ERROR = re.compile(
    r"Connection to \S+ failed|Connection refused|Connection timed out|timed out|No route to host|"
    r"Network is unreachable|Connection reset|Host is down|Failed to resolve|Name or service not known|"
    r"Server returned|HTTP error|Could not resolve|Cannot open connection|Input/output error|"
    r"Error number -?\d+ occurred|Failed to (?:open|connect)", re.IGNORECASE)
SUMMARY = "the input URL could not be read (a connection or server error)"
PROGRAM = re.compile(r"(?:^|(?<=\s))/\S*/((?:ffmpeg|ffprobe|gst-launch-1\.0|nice))(?=\s|$)")


@functools.lru_cache(maxsize=8)
def work_prefixes(work_dir: Path) -> tuple[str, ...]:
    """The spellings of the work dir a log line may hold, longest first (resolved once per dir: every job's
    filter needs them, and `resolve()` reads the file system)."""
    return tuple(sorted({str(work_dir), str(work_dir.resolve()), os.path.abspath(work_dir)}, key=len, reverse=True))


class JobLogFilter:
    def __init__(self, work_dir: Path) -> None:
        self.work_prefixes = work_prefixes(work_dir)
        self.url_input = False
        """Set once the attempt's input is known to be a URL."""

    def line(self, text: str) -> str:
        if self.url_input and NETWORK_ERROR.search(text) and not text.startswith("$ "):
            return SUMMARY
        for prefix in self.work_prefixes:
            text = text.replace(prefix + os.sep, WORK_DIR + os.sep).replace(prefix, WORK_DIR)
        return PROGRAM.sub(r"\1", text)
