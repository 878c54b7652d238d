#!/usr/bin/env python3
"""Run `ffrtmp ARGS…` with a wall clock that steps: `time.time()` = real time + the offset in a file.

    FFRTMP_CHAOS_CLOCK_FILE=/tmp/offset python scripts/bench/clockwrap.py master --port 0 …
    echo 300 > /tmp/offset     # the master's wall clock jumps 300 s ahead; echo 0 steps it back

Only this process's `time.time()` (and `time.time_ns()`) move, as after an NTP step or a VM resumed from a
snapshot; the system clock and `time.monotonic()` are untouched. A thread re-reads the file every 0.1 s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CLOCK_FILE = Path(os.environ["FFRTMP_CHAOS_CLOCK_FILE"])
offset = [0.0]
real_time, real_time_ns = time.time, time.time_ns


def read_offset() -> None:
    # On a miss keep the last offset: the file is replaced atomically, so a miss is transient.
    with contextlib.suppress(OSError, ValueError):
        offset[0] = float(CLOCK_FILE.read_text().strip() or 0)


def watch() -> None:
    while True:
        time.sleep(0.1)
        read_offset()


read_offset()
time.time = lambda: real_time() + offset[0]
time.time_ns = lambda: real_time_ns() + int(offset[0] * 1e9)
threading.Thread(target=watch, daemon=True, name="clock-step").start()

from ffrtmp.cli.app import main  # noqa: E402  (after the patch, so every module sees the stepped clock)

sys.argv = ["ffrtmp", *sys.argv[1:]]
main()
