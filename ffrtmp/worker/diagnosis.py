"""The error text of a failed encode: the cause first, then the process's last words.

FFmpeg ends a failed run with its statistics and "Conversion failed!", which say nothing about why; the
line that does ("No space left on device", "Permission denied", …) often comes earlier. Lines naming a
cause are kept as they stream by, and lead the message; a full disk also says how much room is left.
"""

from __future__ import annotations

import re

from ffrtmp.worker.outputs import space_note

CAUSE = re.compile(r"No space left on device|Disk quota exceeded|File too large|Read-only file system"
                   r"|Permission denied|Connection refused|Connection timed out|No route to host"
                   r"|No such file or directory|Invalid data found|Server returned \d{3}", re.IGNORECASE)
FULL = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)
MAX_CAUSES = 3
NOISE = ("Additional debug info:", "Conversion failed!")


class Diagnosis:
    """Collects what a process says on stderr; `message()` summarises it once the process has failed."""

    def __init__(self) -> None:
        self.causes: list[str] = []
        self.last: list[str] = []

    def add(self, line: str) -> None:
        self.last = (self.last + [line])[-5:]
        if CAUSE.search(line) and line not in self.causes and len(self.causes) < MAX_CAUSES:
            self.causes.append(line)

    def message(self, program: str, code: int, output: str | None) -> str:
        tail = [line for line in self.last[-4:] if line.strip() and line.strip() not in NOISE
                and line not in self.causes]
        head: list[str] = []
        if output and any(FULL.search(line) for line in self.causes):
            head.append(f"No space left on device: {space_note(output)}")
        text = f"{program} exited with {code}: " + " | ".join(head + self.causes + tail)
        return text[:2000]
