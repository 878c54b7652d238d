#!/usr/bin/env python3
"""What a transfer's writes do to a commit's fsync on the same disk: a partial file with and without write-behind.

A thread appends 4 KiB and fdatasyncs, every 10 ms, as a SQLite WAL commit does (a submit on the master),
while the main thread writes `--size` bytes through `ffrtmp.files.partial.HashedPartial` in 256 KiB
chunks at about the rate of a CURVE transfer, then fsyncs it, as the master does with an upload. Rounds
alternate `plain` (the kernel's own writeback) and `write-behind` (each 8 MiB handed to the disk as it is
complete, sync_file_range). One JSON line per round: the commits' p50/p99/max before and during the write.

    python scripts/bench/write_behind.py [--size 1G] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import emit, summary  # noqa: E402

from ffrtmp.files import partial  # noqa: E402
from ffrtmp.units import parse_size  # noqa: E402

CHUNK = 256 << 10


class Commits:
    """4 KiB appended and fdatasynced every 10 ms; the fdatasync times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self._stop.wait(0.01):
                os.write(fd, b"x" * 4096)
                start = time.perf_counter()
                os.fdatasync(fd)
                self.times.append(time.perf_counter() - start)
        finally:
            os.close(fd)

    def __enter__(self) -> Commits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_round(directory: Path, size: int, write_behind: bool) -> dict[str, object]:
    saved = partial.sync_file_range
    if not write_behind:
        partial.sync_file_range = None
    target = directory / "partial.bin"
    chunk = os.urandom(CHUNK)
    os.sync()
    try:
        with Commits(directory / "wal") as commits:
            time.sleep(1)
            calm = len(commits.times)
            start = time.perf_counter()
            file = partial.HashedPartial(target)
            for index in range(size // CHUNK):
                file.append(chunk)
                if index % 16 == 15:
                    time.sleep(0.005)  # ~500 MB/s at most, as a CURVE transfer here
            file.sync()
            file.close()
            seconds = time.perf_counter() - start
            time.sleep(0.2)
    finally:
        partial.sync_file_range = saved
        target.unlink(missing_ok=True)
    return {"bench": "write_behind", "mode": "write-behind" if write_behind else "plain", "size": size,
            "write_s": round(seconds, 3), "commit_calm": summary(commits.times[:calm]),
            "commit_during_write": summary(commits.times[calm:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G", help="bytes to write (e.g. 256M, 1G)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="a directory on the disk to measure (default: TMPDIR)")
    args = parser.parse_args()
    if partial.sync_file_range is None:
        sys.exit("this system has no sync_file_range(2): write-behind is off here, there is nothing to compare")
    size = parse_size(args.size, field="size")
    with tempfile.TemporaryDirectory(prefix="ffrtmp-write-behind-", dir=args.dir) as tmp:
        for _ in range(args.rounds):
            for write_behind in (False, True):
                emit(one_round(Path(tmp), size, write_behind))


if __name__ == "__main__":
    main()
