"""Splitting a process's output into lines as it arrives, in time linear in its size.

Only the new chunk is scanned for line ends (`\\n` or `\\r`: FFmpeg and GStreamer redraw status lines with
`\\r`). An unfinished line is kept up to `MAX_LINE` bytes; past that it is emitted cut, with a marker, and
the rest of it is skipped up to the next line end, so one endless line costs neither quadratic time nor memory.
"""

from __future__ import annotations

import re

MAX_LINE = 8192
"""Bytes of one line kept (the log shipper and the master cut at the same length)."""

CUT_MARKER = " …[cut]"

_ENDS = re.compile(rb"[\r\n]")


class LineSplitter:
    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.rest = bytearray()
        """The unfinished line so far (never longer than `max_line`)."""
        self.skipping = False
        """An over-long line was emitted cut: drop its remainder until its line end."""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that `chunk` completes (decoded, right-stripped; empty ones left out)."""
        lines: list[str] = []
        start = 0
        for end in _ENDS.finditer(chunk):
            self._take(chunk[start:end.start()], lines)
            if not self.skipping:
                self._emit(bytes(self.rest), lines)
            self.rest.clear()
            self.skipping = False
            start = end.end()
        self._take(chunk[start:], lines)
        return lines

    def close(self) -> list[str]:
        """The last line, when the output did not end with a line end."""
        lines: list[str] = []
        if not self.skipping:
            self._emit(bytes(self.rest), lines)
        self.rest.clear()
        self.skipping = False
        return lines

    def _take(self, piece: bytes, lines: list[str]) -> None:
        if self.skipping or not piece:
            return
        room = self.max_line - len(self.rest)
        if len(piece) <= room:
            self.rest += piece
            return
        self.rest += piece[:room]
        self._emit(bytes(self.rest), lines, cut=True)
        self.rest.clear()
        self.skipping = True

    @staticmethod
    def _emit(raw: bytes, lines: list[str], cut: bool = False) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            lines.append(text + CUT_MARKER if cut else text)
