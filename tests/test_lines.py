"""F12: the runner's line reader, linear in its input, with lines capped as they arrive."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ffrtmp.worker.engines import Command
from ffrtmp.worker.lines import CUT_MARKER, MAX_LINE, LineSplitter
from ffrtmp.worker.runner import Attempt, AttemptRunner, Event, WorkerPaths


def split_all(chunks: list[bytes], max_line: int = MAX_LINE) -> list[str]:
    splitter = LineSplitter(max_line)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return lines + splitter.close()


def test_lines_end_at_newlines_and_carriage_returns_across_chunks() -> None:
    assert split_all([b"fra", b"me=1\rframe=2\r\n", b"\nlast"]) == ["frame=1", "frame=2", "last"]


def test_utf8_split_between_chunks_survives() -> None:
    text = "größe: 5 MiB\n".encode()
    assert split_all([text[:3], text[3:]]) == ["größe: 5 MiB"]


def test_a_long_line_is_cut_once_and_the_rest_of_it_skipped() -> None:
    lines = split_all([b"x" * 5000, b"y" * 5000, b"z" * 5000, b"\nnext\n"], max_line=8192)
    assert lines == ["x" * 5000 + "y" * 3192 + CUT_MARKER, "next"]


def test_an_endless_line_keeps_memory_bounded() -> None:
    splitter = LineSplitter(max_line=1024)
    emitted = []
    for _ in range(1000):
        emitted += splitter.feed(b"a" * 65536)
        assert len(splitter.rest) <= 1024
    assert emitted == ["a" * 1024 + CUT_MARKER]
    assert splitter.close() == []


def test_work_is_linear_in_the_input() -> None:
    """64 MiB in 64 KiB chunks: the old reader rescanned the whole unfinished line per chunk (41 s of CPU);
    bounded work finishes in well under a second here, so a generous deadline still tells them apart."""
    splitter = LineSplitter()
    chunk = b"b" * 65536
    began = time.process_time()
    for _ in range(1024):
        splitter.feed(chunk)
    assert time.process_time() - began < 10.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def test_a_process_writing_one_huge_line_is_logged_cut(tmp_path: Path) -> None:
    """A real process writes 32 MiB with no newline on stderr: one capped LOG line, in bounded time."""
    spec: dict[str, Any] = {"engine": "ffmpeg", "params": {"duration": 1, "fps": 10}}
    recorder = Recorder()
    runner = AttemptRunner(Attempt(job="j", attempt=1, spec=spec, received_at=0.0), WorkerPaths(tmp_path), None,
                           {}, recorder)
    writer = "import sys\nfor _ in range(512): sys.stderr.buffer.write(b'q' * 65536)\nsys.stderr.flush()"
    began = time.monotonic()
    run = runner._execute(Command([sys.executable, "-c", writer], progress_format="none"), None, 120)
    assert (run.code, run.reason) == (0, None)
    assert time.monotonic() - began < 60
    lines = [e.data[3] for e in recorder.events if e.kind == "log" and e.data[2] == "stderr"]
    assert lines == ["q" * MAX_LINE + CUT_MARKER]
