#!/usr/bin/env python3
"""File transfer over the master's data channel (docs/files.md) against a raw TCP copy, in one run.

A real master process (CURVE on, `--files-port`), the peer library (ffrtmp/files/transfer.py), a file of
`--size` random bytes in a directory of the client's own. Prints one JSON line: upload and download rates and
their ratio to an unencrypted TCP copy of the same file to disk on the same machine (goal: >= 0.5 and >= 150
MB/s at 1 GiB), bytes sent by an identical re-upload (goal: 0), bytes re-sent by a resume after the uploader
was SIGKILLed half way (goal: <= one chunk), the master's RSS growth during a transfer (goal: <= 8 MiB), 20
uploads at once (goal: all complete), and main-channel submit round trips calm and during the upload (goal:
p99 within 2x).

    python scripts/bench/transfer.py [--size 1G]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from benchlib import emit, free_port, summary  # noqa: E402

from ffrtmp.files import wire  # noqa: E402
from ffrtmp.files.transfer import FilesPeer, download, file_sha256, upload  # noqa: E402
from ffrtmp.local import LocalCluster, wait_for  # noqa: E402
from ffrtmp.security import load_keypair, load_public_key  # noqa: E402
from ffrtmp.units import parse_size  # noqa: E402

BLOCK = 1 << 20

KILLED_UPLOAD = """
import sys
from pathlib import Path
from ffrtmp.files.transfer import FilesPeer, upload
from ffrtmp.security import load_keypair, load_public_key
endpoint, master_key, client_key, source, mark = sys.argv[1:]
peer = FilesPeer(endpoint, load_public_key(master_key), load_keypair(Path(client_key)))
def progress(done, total):
    if done >= total // 2:
        Path(mark).write_text(str(done))
        import time; time.sleep(60)
upload(peer, Path(source), progress=progress)
"""


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left > 0:
            handle.write(os.urandom(min(BLOCK * 16, left)))
            left -= min(BLOCK * 16, left)
    os.sync()  # its dirty pages written now, not in the middle of a timed transfer's fsyncs


def raw_tcp_copy(source: Path, target: Path) -> float:
    """Seconds to send the file over loopback TCP, unencrypted, into a file on the same disk."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def receive() -> None:
        conn, _ = server.accept()
        with conn, target.open("wb") as out:
            while chunk := conn.recv(wire.CHUNK_SIZE):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())

    thread = threading.Thread(target=receive)
    thread.start()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn, source.open("rb") as handle:
        conn.sendfile(handle)
    thread.join()
    server.close()
    return time.perf_counter() - start


class RssSampler:
    """The master's largest RSS while a transfer runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.before = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class SubmitProbe:
    """Submits on the main channel, one at a time, while something else runs: their round trips (the main loop
    and its commit), so a transfer that held the loop would show."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.client = cluster.client(timeout=30)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            start = time.perf_counter()
            self.client.submit("test1", engine="null")
            self.times.append(time.perf_counter() - start)

    def __enter__(self) -> SubmitProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def run_concurrent(peer: FilesPeer, directory: Path, count: int, size: int, master_pid: int) -> dict[str, object]:
    """`count` uploads at once, each from a thread of its own: how many completed, the master's RSS per transfer."""
    sources = []
    for index in range(count):
        path = directory / f"concurrent-{index}.bin"
        make_file(path, size)
        sources.append((path, file_sha256(path)))
    done: list[int] = []

    def one(path: Path, digest: str) -> None:
        done.append(upload(peer, path, sha256=digest, timeout=120).sent)

    threads = [threading.Thread(target=one, args=source) for source in sources]
    with RssSampler(master_pid) as rss:
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    return {"concurrent": count, "concurrent_completed": sum(1 for sent in done if sent == size),
            "concurrent_mb_s": round(count * size / 1e6 / seconds, 1),
            "master_rss_per_transfer_mib": round((rss.peak - rss.before) / 2**20 / max(1, count), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G", help="bytes to transfer (e.g. 64M, 1G)")
    parser.add_argument("--concurrent", type=int, default=20, help="uploads at once, of SIZE/8 each")
    args = parser.parse_args()
    size = parse_size(args.size, field="size")
    with tempfile.TemporaryDirectory(prefix="ffrtmp-transfer-") as tmp:
        root = Path(tmp)
        client_dir = root / "client"
        client_dir.mkdir()
        source = client_dir / "input.bin"
        make_file(source, size)
        hash_start = time.perf_counter()
        digest = file_sha256(source)
        hash_s = time.perf_counter() - hash_start
        raw_s = raw_tcp_copy(source, root / "raw-copy.bin")
        (root / "raw-copy.bin").unlink()
        port = free_port()
        with LocalCluster(root / "cluster") as cluster:
            cluster.start_master(["--files-port", str(port)])
            assert cluster.master is not None
            master_key = cluster.master_dir / "master.key"
            client_key = cluster.root / "config" / "client.key_secret"
            peer = FilesPeer.beside(cluster.url, port, load_public_key(master_key), load_keypair(client_key))
            with SubmitProbe(cluster) as calm:
                time.sleep(2)
            os.sync()
            with RssSampler(cluster.master.pid) as rss, SubmitProbe(cluster) as busy:
                start = time.perf_counter()
                first = upload(peer, source, sha256=digest)
                upload_s = time.perf_counter() - start
            again = upload(peer, source, sha256=digest)
            os.sync()
            start = time.perf_counter()
            fetched = download(peer, client_dir / "output.bin", sha256=digest)
            download_s = time.perf_counter() - start
            fetched_ok = file_sha256(fetched.path) == digest
            fetched.path.unlink()

            # A resume: a second file, its uploader killed once half of it was acknowledged.
            other = client_dir / "other.bin"
            make_file(other, size)
            mark = root / "half"
            proc = subprocess.Popen([sys.executable, "-c", KILLED_UPLOAD, peer.endpoint, str(master_key),
                                     str(client_key), str(other), str(mark)], cwd=Path(__file__).resolve().parents[2])
            try:
                wait_for(lambda: mark.exists() and mark.read_text(), 600, "the uploader to reach half the file")
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            partials = list((cluster.master_dir / "files" / "incoming").iterdir())
            held = sum(p.stat().st_size for p in partials)
            resumed = upload(peer, other)
            resent = resumed.sent - (size - held)
            concurrent = run_concurrent(peer, client_dir, args.concurrent, max(BLOCK, size // 8), cluster.master.pid)
    mb = size / 1e6
    emit({"bench": "transfer", "size": size, "hash_s": round(hash_s, 3), "raw_tcp_mb_s": round(mb / raw_s, 1),
          "upload_mb_s": round(mb / upload_s, 1), "download_mb_s": round(mb / download_s, 1),
          "upload_ratio": round(raw_s / upload_s, 3), "download_ratio": round(raw_s / download_s, 3),
          "first_sent": first.sent, "reupload_sent": again.sent, "fetched_ok": fetched_ok,
          "resume_held": held, "resume_sent": resumed.sent, "resume_resent": resent,
          "resume_resent_ok": resent <= wire.CHUNK_SIZE,
          "master_rss_growth_mib": round((rss.peak - rss.before) / 2**20, 1), **concurrent,
          "submit_calm": summary(calm.times), "submit_during_upload": summary(busy.times)})


if __name__ == "__main__":
    main()
