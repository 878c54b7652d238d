"""The CPU time and peak memory of one job's whole process tree.

Two sources, the larger wins: the kernel's rusage of the reaped process (`os.wait4`), which includes every
descendant that was waited for (a child FFmpeg or GStreamer spawned and reaped counts though it is gone), and
psutil samples taken with the runner's read loop, which also see descendants that were orphaned (re-parented
away, so never in our rusage). Memory is the peak of the tree's summed RSS over the samples, or the largest
single process's peak from rusage when that is higher (a short job may end between two samples).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_INTERVAL = 0.5
"""Seconds between samples: psutil walks /proc for the tree, a few hundred microseconds a time."""
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
"""`ru_maxrss` is bytes on macOS, KiB on Linux."""


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    """User + system CPU time of the whole tree."""
    peak_rss_bytes: int
    how: str
    """How the numbers were obtained (what `metrics` says beside them)."""


def _children_listed(pid: int) -> list[int] | None:
    """The pids of `pid`'s children from the kernel's per-thread lists, None where Linux keeps none.

    `psutil.Process.children` finds them by reading the parent of every process on the machine (a few
    milliseconds with a hundred processes, more on a busy server, twice a second per job); the kernel's
    `/proc/PID/task/TID/children` (CONFIG_PROC_CHILDREN) names them directly.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as listing:
                found += [int(child) for child in listing.read().split()]
        except FileNotFoundError:
            if tid == str(pid):
                return None  # the kernel has no such lists (or the process is gone): psutil's way
        except OSError:
            continue  # a thread that ended since the listing
    return found


def descendants(root: psutil.Process) -> list[psutil.Process]:
    """Every live descendant of `root` (psutil.Error when `root` itself is gone)."""
    if not _LISTS:
        listed: list[psutil.Process] = root.children(recursive=True)
        return listed
    found: list[psutil.Process] = []
    pending = [root.pid]
    while pending:
        pid = pending.pop()
        children = _children_listed(pid)
        if children is None:  # the kernel lists children here, so the process is gone
            if pid == root.pid:
                raise psutil.NoSuchProcess(root.pid)
            continue
        for child in children:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(child))
                pending.append(child)
    return found


_LISTS = _children_listed(os.getpid()) is not None
"""Whether this kernel lists each thread's children (Linux with CONFIG_PROC_CHILDREN, the usual build)."""


@dataclass
class TreeUsage:
    """Samples of one process tree, keyed by (pid, start time) so a reused pid is a new process."""

    pid: int
    _root: psutil.Process | None = None
    _cpu: dict[tuple[int, float], float] = field(default_factory=dict)
    _peak_rss: int = 0
    _next: float = 0.0
    samples: int = 0

    def __post_init__(self) -> None:
        with contextlib.suppress(psutil.Error):
            self._root = psutil.Process(self.pid)

    def sample(self, now: float | None = None, force: bool = False) -> None:
        """Record the tree's CPU times and RSS (at most every SAMPLE_INTERVAL unless `force`)."""
        now = time.monotonic() if now is None else now
        if self._root is None or (not force and now < self._next):
            return
        self._next = now + SAMPLE_INTERVAL
        try:
            tree = [self._root, *descendants(self._root)]
        except psutil.Error:
            return  # the root is gone (or a zombie): the rusage at reaping covers it
        rss = 0
        for process in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    memory = process.memory_info()
                    key = (process.pid, process.create_time())
            except psutil.Error:
                continue
            self._cpu[key] = times.user + times.system
            rss += memory.rss
        self._peak_rss = max(self._peak_rss, rss)
        self.samples += 1

    def finish(self, rusage: object | None) -> Usage:
        """The tree's totals, given the rusage `reap` returned (None when another thread reaped the process)."""
        sampled = sum(self._cpu.values())
        if rusage is None:
            return Usage(round(sampled, 3), self._peak_rss, f"psutil samples of the process tree ({self.samples})")
        reaped = float(getattr(rusage, "ru_utime", 0.0)) + float(getattr(rusage, "ru_stime", 0.0))
        maxrss = int(getattr(rusage, "ru_maxrss", 0)) * MAXRSS_UNIT
        return Usage(round(max(reaped, sampled), 3), max(self._peak_rss, maxrss),
                     f"rusage of the reaped process tree and {self.samples} psutil samples")


def reap(proc: subprocess.Popen[bytes]) -> tuple[int, object | None]:
    """Wait for `proc` and return its exit code and rusage (its own and its waited-for descendants').

    Only when another thread (the kill watchdog) reaped it first is the rusage unknown: then None."""
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # Popen must not wait for it again
    return code, rusage
