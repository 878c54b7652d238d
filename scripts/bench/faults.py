"""The faults `chaos.py` injects besides SIGKILL: partitions, a stepped master clock, a full master disk.

Each one touches only what it made itself: network namespaces and veth pairs with its own names and addresses
(10.X.N.0/30, one pair per namespace, X unused here), a tmpfs it mounted, an offset file read by `clockwrap.py`.
Each is a context manager whose exit undoes everything, so a failed run leaves nothing behind. Also here: a
watcher of the FFmpeg processes, to measure how long two attempts of one job encoded at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

SUBNETS = range(200, 250)
"""The run takes the first 10.X.0.0/16 (X in 200..249) with no address on this machine: 10.X.N.1 is the host end
of pair N, 10.X.N.2 its end in namespace N. Two runs at once take different ones."""


def can_manage_namespaces() -> str | None:
    """None when partitions can run here, else why not (they need root and `ip`)."""
    if os.geteuid() != 0:
        return "network partitions need root (network namespaces)"
    if shutil.which("ip") is None:
        return "network partitions need the `ip` command (iproute2)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class Network:
    """`count` network namespaces, each joined to the host by its own veth pair; partition = blackhole route.

    The partition is a blackhole route *inside* the namespace towards the host end, so the host's own routing
    tables are never changed; the worker's packets go nowhere, and TCP to the master stalls as in a real split.
    """

    def __init__(self, count: int) -> None:
        self.tag = f"ffc{os.getpid() % 100000}"
        self.count = count
        self.created: list[str] = []
        self.partitioned: set[int] = set()
        taken = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        free = [f"10.{x}" for x in SUBNETS if f" 10.{x}." not in taken]
        if not free:
            raise RuntimeError("every 10.X.0.0/16 for X in 200..249 is in use on this machine; not touching them")
        self.subnet = free[0]

    def host_address(self, index: int) -> str:
        return f"{self.subnet}.{index}.1"

    def namespace(self, index: int) -> str:
        return f"{self.tag}-{index}"

    def prefix(self, index: int) -> list[str]:
        """argv prefix that runs a command inside namespace `index`."""
        return ["ip", "netns", "exec", self.namespace(index)]

    def __enter__(self) -> Network:
        try:
            for index in range(self.count):
                ns, host_end, ns_end = self.namespace(index), f"{self.tag}h{index}", f"{self.tag}n{index}"
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                _ip("link", "set", ns_end, "netns", ns)
                _ip("addr", "add", f"{self.host_address(index)}/30", "dev", host_end)
                _ip("link", "set", host_end, "up")
                inside = ["netns", "exec", ns, "ip"]
                _ip(*inside, "addr", "add", f"{self.subnet}.{index}.2/30", "dev", ns_end)
                _ip(*inside, "link", "set", ns_end, "up")
                _ip(*inside, "link", "set", "lo", "up")
                # The master listens on namespace 0's host end; every namespace reaches it through its own pair.
                _ip(*inside, "route", "add", "default", "via", self.host_address(index))
        except BaseException:
            self.close()
            raise
        return self

    def partition(self, index: int) -> None:
        _ip("netns", "exec", self.namespace(index), "ip", "route", "add", "blackhole", f"{self.host_address(0)}/32")
        self.partitioned.add(index)

    def heal(self, index: int) -> None:
        _ip("netns", "exec", self.namespace(index), "ip", "route", "del", "blackhole", f"{self.host_address(0)}/32")
        self.partitioned.discard(index)

    def close(self) -> None:
        """Delete the namespaces: that also deletes their veth pairs (and both ends' addresses)."""
        for ns in reversed(self.created):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _ip("netns", "delete", ns)
        self.created.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClockStep:
    """The offset (seconds) that `clockwrap.py` adds to the master's `time.time()`; written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self.set(0.0)

    def set(self, offset: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self.path)
        self.offset = offset


class FullDisk:
    """A tmpfs of `size_mib` mounted on `path` (the master's data dir), which `fill()` fills up to the last byte."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.mounted = False
        self.ballast = path / "chaos-ballast"

    def __enter__(self) -> FullDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700", "tmpfs", str(self.path)],
                       check=True, capture_output=True, text=True, timeout=10)
        self.mounted = True
        return self

    def fill(self) -> int:
        """Write the ballast until the disk refuses more; returns the bytes written."""
        written = 0
        chunk = b"\0" * 2**20
        with open(self.ballast, "wb", buffering=0) as ballast:
            while True:
                try:
                    written += ballast.write(chunk[:max(4096, min(len(chunk), self.free()))])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return written

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()

    def __exit__(self, *exc: object) -> None:
        self.release()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
            self.mounted = False


PARTIAL_ARG = re.compile(r"\.([A-Za-z0-9_-]+)\.attempt-(\d+)\.partial\.")


class EncoderWatch:
    """Polls /proc for FFmpeg processes and notes when each (job, attempt) was seen encoding.

    Attempts write `NAME.JOB.attempt-N.partial.EXT`, so the command line names both. Seen from outside, with
    this process's monotonic clock: the master's stepped clock cannot skew it. Only outputs under `root` count
    (other ffrtmp clusters on this machine write the same names).
    """

    def __init__(self, root: Path, interval: float = 0.2) -> None:
        self.root = str(root)
        self.interval = interval
        self.seen: dict[tuple[str, int], list[float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            now = time.monotonic()
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if not argv or not argv[0].endswith(b"ffmpeg"):
                    continue
                for raw in argv:
                    arg = raw.decode(errors="replace").removeprefix("file:")  # workers pass paths as file:PATH
                    match = PARTIAL_ARG.search(arg) if arg.startswith(self.root) else None
                    if match:
                        span = self.seen.setdefault((match[1], int(match[2])), [now, now])
                        span[1] = now

    def overlaps(self) -> dict[str, float]:
        """Per job with two attempts seen at once: the seconds during which they both encoded."""
        by_job: dict[str, list[list[float]]] = {}
        for (job, _attempt), span in self.seen.items():
            by_job.setdefault(job, []).append(span)
        result = {}
        for job, spans in by_job.items():
            spans.sort()
            together = 0.0
            for index, (start, end) in enumerate(spans):
                for other_start, other_end in spans[index + 1:]:
                    together += max(0.0, min(end, other_end) - max(start, other_start))
            if together > 0:
                result[job] = together
        return result

    def __enter__(self) -> EncoderWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
