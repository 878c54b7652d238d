"""The master's data channel end to end (docs/files.md): a real master process, the peer library, real files.

The client's and the master's sides are separate directories; nothing is shared but the socket.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from ffrtmp.errors import (
    Conflict,
    FileMismatch,
    InvalidInput,
    MasterUnreachable,
    NotAuthorized,
    NotFound,
    RateLimited,
    StoreUnavailable,
)
from ffrtmp.files import wire
from ffrtmp.files.objects import LocalObjects
from ffrtmp.files.transfer import FilesPeer, download, upload
from ffrtmp.local import LocalCluster
from ffrtmp.master.filechannel import FileChannel, FilesOptions
from ffrtmp.master.store import open_store
from ffrtmp.protocol import Kind, decode, encode, unbatch
from ffrtmp.security import KeyPair, load_keypair, load_public_key
from tests.conftest import eventually
from tests.test_transport import free_port

pytestmark = pytest.mark.slow
MIB = 1 << 20


def _peer(cluster: LocalCluster, port: int) -> FilesPeer:
    return FilesPeer.beside(cluster.url, port, load_public_key(cluster.master_dir / "master.key"),
                            load_keypair(cluster.root / "config" / "client.key_secret"))


class Files:
    def __init__(self, cluster: LocalCluster, port: int, client_dir: Path) -> None:
        self.cluster, self.port, self.client_dir = cluster, port, client_dir
        self.peer = _peer(cluster, port)
        self.key_a = cluster.api_key("submit", "alpha")
        self.key_b = cluster.api_key("submit", "beta")

    def make(self, name: str, size: int) -> Path:
        path = self.client_dir / name
        path.write_bytes(os.urandom(size))
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    root = tmp_path_factory.mktemp("files")
    port = free_port()
    with LocalCluster(root / "cluster") as cluster:
        cluster.start_master(["--files-port", str(port)])
        client_dir = root / "client"
        client_dir.mkdir()
        yield Files(cluster, port, client_dir)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_then_an_identical_upload_sends_nothing(files: Files) -> None:
    source = files.make("clip.mp4", 3 * MIB + 123)
    seen: list[tuple[int, int]] = []
    first = upload(files.peer, source, api_key=files.key_a, progress=lambda done, total: seen.append((done, total)))
    assert (first.sent, first.had, first.sha256) == (source.stat().st_size, False, sha(source))
    assert seen[-1] == (source.stat().st_size,) * 2
    again = upload(files.peer, source, api_key=files.key_a)
    assert (again.sent, again.had) == (0, True)
    fetched = download(files.peer, files.client_dir / "back.mp4", sha256=first.sha256, api_key=files.key_a)
    assert fetched.path.read_bytes() == source.read_bytes() and fetched.name == "clip.mp4"
    stored = files.cluster.master_dir / "files" / "objects" / first.sha256[:2] / first.sha256
    assert stored.stat().st_size == source.stat().st_size


def test_another_tenant_gets_not_found_by_hash_and_its_own_upload_is_received_in_full(files: Files) -> None:
    source = files.make("mine.mp4", 300_000)
    mine = upload(files.peer, source, api_key=files.key_a)
    with pytest.raises(NotFound):
        download(files.peer, files.client_dir / "theirs.mp4", sha256=mine.sha256, api_key=files.key_b)
    assert not (files.client_dir / "theirs.mp4").exists()
    theirs = upload(files.peer, source, api_key=files.key_b)
    assert (theirs.sent, theirs.had) == (300_000, False)  # nothing tells beta that alpha holds it


@pytest.mark.parametrize("name", ["a\x01b.mp4", "../x.mp4", "dir/x.mp4", "..", "tab\there", "x" * 256])
def test_a_name_that_is_no_file_name_is_refused_naming_the_field(files: Files, name: str) -> None:
    """What `jobs fetch` writes the file as, and a text column: no path, no control characters (a NUL failed
    the store's write on PostgreSQL), no more than 255 characters."""
    source = files.make("named.bin", 1000)
    with pytest.raises(InvalidInput) as refused:
        upload(files.peer, source, name=name, api_key=files.key_a)
    assert refused.value.field == "name"


def test_a_corrupt_upload_is_refused_with_422_and_nothing_is_visible(files: Files) -> None:
    source = files.make("bad.mp4", 600_000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(FileMismatch):
        upload(files.peer, source, sha256=wrong, api_key=files.key_a)
    assert not (files.cluster.master_dir / "files" / "objects" / wrong[:2] / wrong).exists()
    assert list((files.cluster.master_dir / "files" / "incoming").iterdir()) == []
    with pytest.raises(NotFound):
        download(files.peer, files.client_dir / "bad-back.mp4", sha256=wrong, api_key=files.key_a)


def test_a_tenant_quota_refuses_the_upload_before_any_byte(files: Files) -> None:
    key = files.cluster.api_key("submit", "small")
    store = open_store(files.cluster.master_dir / "master.db", 0)
    try:
        with store.transaction():
            store.set_bytes_quota("small", 100_000)
    finally:
        store.close()
    with pytest.raises(RateLimited, match="may store 100000 bytes"):
        upload(files.peer, files.make("big.mp4", 200_000), api_key=key)
    assert upload(files.peer, files.make("fits.mp4", 90_000), api_key=key).sent == 90_000


def test_a_stale_attempts_output_is_refused_with_409(files: Files) -> None:
    with files.cluster.client() as client:
        client.api_key = files.key_a
        job_id = client.submit("test1")  # no worker: never assigned, so attempt 1 is not running
        with pytest.raises(Conflict, match="stale attempt"):
            upload(files.peer, files.make("out.mp4", 1000), job=job_id, attempt=1)
        client.cancel(job_id)  # never dispatched to a worker a later test joins


def test_a_killed_uploader_resumes_resending_at_most_one_chunk(files: Files) -> None:
    source = files.make("long.mp4", 24 * MIB)
    acked = files.client_dir / "acked"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ffrtmp.files.transfer import FilesPeer, upload\n"
        "from ffrtmp.security import load_keypair, load_public_key\n"
        "root, port, key, source, acked = sys.argv[1:]\n"
        "peer = FilesPeer.beside('tcp://127.0.0.1:1', int(port), load_public_key(Path(root) / 'master' / "
        "'master.key'), load_keypair(Path(root) / 'config' / 'client.key_secret'))\n"
        "def progress(done, total):\n"
        "    Path(acked).write_text(str(done))\n"
        "    time.sleep(0.02)\n"
        "upload(peer, Path(source), api_key=key, progress=progress)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(files.cluster.root), str(files.port), files.key_a,
                             str(source), str(acked)])
    try:
        eventually(lambda: acked.exists() and int(acked.read_text() or 0) >= 8 * MIB, timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        done = int(acked.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = upload(files.peer, source, api_key=files.key_a)
    assert not resumed.had and 0 < resumed.sent <= source.stat().st_size - done
    assert resumed.sent <= source.stat().st_size - 8 * MIB + wire.CHUNK_SIZE
    fetched = download(files.peer, files.client_dir / "long-back.mp4", sha256=resumed.sha256, api_key=files.key_a)
    assert sha(fetched.path) == sha(source)


def test_hostile_frames_never_crash_the_data_channel(files: Files) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.curve_serverkey = files.peer.server_key
    assert files.peer.keys is not None
    sock.curve_publickey, sock.curve_secretkey = files.peer.keys.public, files.peer.keys.secret
    sock.connect(files.peer.endpoint)
    put = {"tid": "t", "sha256": "0" * 64, "size": 10, "key": files.key_a}
    garbage: list[list[bytes]] = [
        [b"not json"], [b"{}"], [b"[1,2]"], [b'{"v":1,"k":"put","b":{}}'], [b"\xff\xfe"], [b"x" * 100_000],
        [wire.encode("chunk", {"tid": "nope", "offset": 0}), b"data"],
        [wire.encode("put", {**put, "sha256": "XYZ"})], [wire.encode("put", {**put, "size": -5})],
        [wire.encode("put", {**put, "tid": "x" * 500})], [wire.encode("credit", {"tid": "t", "credit": 10**9})],
        [wire.encode("put", put), b"a", b"b", b"c"], [wire.encode("stored", {"tid": "t", "sha256": "0" * 64,
                                                                              "size": 1})],
        [wire.encode("put", put)], [wire.encode("chunk", {"tid": "t", "offset": 5}), b"12345"],
        [wire.encode("chunk", {"tid": "t", "offset": 0}), b"x" * (wire.CHUNK_SIZE + 1)],
        [wire.encode("get", {"tid": "g", "sha256": "0" * 64, "offset": 10**12, "key": files.key_a})],
        [wire.encode("get", {"tid": "h", "job": "../../etc", "key": files.key_a})],
    ]
    try:
        for frames in garbage:
            sock.send_multipart(frames)
        source = files.make("after.mp4", 50_000)
        assert upload(files.peer, source, api_key=files.key_a).sent == 50_000
    finally:
        sock.close(0)
        context.term()
    assert files.cluster.master is not None and files.cluster.master.poll() is None


def test_a_full_store_refuses_the_upload_with_507(tmp_path: Path) -> None:
    port = free_port()
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master(["--files-port", str(port), "--files-max-bytes", "1M"])
        peer = _peer(cluster, port)
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(2 * MIB))
        with pytest.raises(StoreUnavailable, match="store is full"):
            upload(peer, source)
        assert list((cluster.master_dir / "files" / "incoming").iterdir()) == []
        with cluster.client() as client:
            assert client.request("files_info") == {"port": port, "chunk_size": wire.CHUNK_SIZE,
                                                    "window": wire.WINDOW}


class ScriptedWorker:
    """A worker's main-channel side by hand (HELLO, JOB, RESULT) with the client's CURVE key pair."""

    def __init__(self, cluster: LocalCluster, peer: FilesPeer) -> None:
        from ffrtmp.transport import DealerSocket

        self.dealer = DealerSocket(cluster.url, peer.server_key, peer.keys)

    def send(self, kind: Kind, body: dict[str, Any]) -> None:
        self.dealer.send(encode(kind, body))

    def expect(self, kind: Kind, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.dealer.recv(0.2)
            if frame is None:
                continue
            message = decode(frame)
            for one in unbatch(message) if message.kind is Kind.BATCH else [message]:
                if one.kind is kind:
                    return one.body
        raise AssertionError(f"no {kind.value} within {timeout}s")


def test_a_worker_reads_its_attempts_input_and_stores_its_output_by_its_curve_key(files: Files) -> None:
    from ffrtmp import __version__

    source = files.make("input.mp4", 700_000)
    stored = upload(files.peer, source, api_key=files.key_a)
    ref = {"sha256": stored.sha256, "size": stored.size, "name": "input.mp4"}
    worker = ScriptedWorker(files.cluster, files.peer)
    try:
        worker.send(Kind.HELLO, {"name": "scripted", "fingerprint": "fp", "version": __version__, "slots": 1,
                                 "engines": ["null"], "key": files.cluster.api_key("worker", "alpha")})
        assert worker.expect(Kind.WELCOME)["files_port"] == files.port
        with files.cluster.client() as client:
            client.api_key = files.key_a
            job_id = client.submit("test1", engine="null", input_file=ref)
            job = worker.expect(Kind.JOB)
            assert job["job"] == job_id and job["spec"]["params"]["input_file"] == ref
            attempt = job["attempt"]
            fetched = download(files.peer, files.client_dir / "worker-in.mp4", job=job_id, which="input",
                               attempt=attempt)
            assert fetched.sha256 == stored.sha256
            stranger = FilesPeer(files.peer.endpoint, files.peer.server_key, KeyPair(*zmq.curve_keypair()))
            with pytest.raises(NotAuthorized):
                download(stranger, files.client_dir / "stolen.mp4", job=job_id, which="input", attempt=attempt)
            output = files.make("output.mp4", 400_000)
            out = upload(files.peer, output, job=job_id, attempt=attempt)
            output_file = {"sha256": out.sha256, "size": out.size, "name": "output.mp4"}
            worker.send(Kind.RESULT, {"job": job_id, "attempt": attempt, "status": "completed", "at": time.time(),
                                      "output_file": output_file})
            eventually(lambda: client.get(job_id)["status"] == "completed")
            assert client.get(job_id)["files"] == {"input": ref, "output": output_file}
            back = download(files.peer, files.client_dir / "fetched-output.mp4", job=job_id, api_key=files.key_a)
            assert sha(back.path) == out.sha256
            with pytest.raises(NotFound):  # another tenant does not see the job, nor its files
                download(files.peer, files.client_dir / "other.mp4", job=job_id, api_key=files.key_b)
    finally:
        worker.dealer.close()


def test_a_master_killed_mid_upload_keeps_nothing_half_visible_and_the_upload_resumes(tmp_path: Path) -> None:
    port = free_port()
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master(["--files-port", str(port)])
        peer = _peer(cluster, port)
        source = tmp_path / "clip.bin"
        source.write_bytes(os.urandom(16 * MIB))
        digest = sha(source)
        incoming = cluster.master_dir / "files" / "incoming"
        seen: list[int] = []

        def kill_half_way(done: int, total: int) -> None:
            seen.append(done)
            if done >= total // 2 and cluster.master is not None and cluster.master.poll() is None:
                cluster.kill(cluster.master)
                cluster.master.wait(timeout=10)

        with pytest.raises(MasterUnreachable):
            upload(peer, source, progress=kill_half_way, timeout=2, retries=0)
        assert not (cluster.master_dir / "files" / "objects" / digest[:2] / digest).exists()
        held = sum(p.stat().st_size for p in incoming.iterdir())
        assert 0 < held < 16 * MIB
        cluster.start_master(["--files-port", str(port)], port=cluster.port)
        resumed = upload(peer, source)
        assert resumed.sent == 16 * MIB - held
        fetched = download(peer, tmp_path / "back.bin", sha256=digest)
        assert sha(fetched.path) == digest


def test_a_download_resumes_from_its_partial_and_a_wrong_partial_is_fetched_again(files: Files) -> None:
    source = files.make("resume-me.mp4", 2 * MIB)
    stored = upload(files.peer, source, api_key=files.key_a)
    dest = files.client_dir / "resumed.mp4"
    Path(f"{dest}.part").write_bytes(source.read_bytes()[:MIB])
    resumed = download(files.peer, dest, sha256=stored.sha256, api_key=files.key_a)
    assert resumed.received == MIB and sha(dest) == stored.sha256 and not Path(f"{dest}.part").exists()
    wrong = files.client_dir / "wrong.mp4"
    Path(f"{wrong}.part").write_bytes(os.urandom(MIB))  # not this file's bytes: caught by the hash, refetched
    again = download(files.peer, wrong, sha256=stored.sha256, api_key=files.key_a)
    assert sha(wrong) == stored.sha256 and again.size == 2 * MIB


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_channel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileChannel]:
    """A data channel in this process (no CURVE, no keys: an open master) on either store."""
    db = str(request.getfixturevalue("postgres_url") if request.param == "postgresql" else tmp_path / "master.db")
    open_store(db, 0).close()
    channel = FileChannel(f"tcp://127.0.0.1:{free_port()}", None, None, LocalObjects(tmp_path / "files"),
                          lambda: open_store(db, 0), None, lambda: True, FilesOptions())
    channel.start()
    try:
        yield channel
    finally:
        channel.stop()


def test_strings_no_store_can_hold_get_a_client_error_on_either_store(bare_channel: FileChannel,
                                                                     tmp_path: Path) -> None:
    """A NUL reached PostgreSQL's text through the data channel (a 500 and a traceback there, 404 on SQLite):
    a header's NUL is now U+FFFD, as on the main channel, and a `get` by a hash that is none is 400."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{bare_channel.port}")
    asked = {"nul-job": {"job": "a\x00b"}, "bad-hash": {"sha256": "a\x00" + "0" * 62},
             "hex-upper": {"sha256": "A" * 64}}
    try:
        for tid, what in asked.items():
            sock.send(wire.encode("get", {"tid": tid, **what}))
        answers: dict[str, int] = {}
        while len(answers) < len(asked):
            assert sock.poll(10_000), f"no answer to {sorted(set(asked) - set(answers))}"
            header = wire.decode(sock.recv_multipart()[0])
            answers[header.body["tid"]] = header.body.get("status", 0)
    finally:
        sock.close(0)
        context.term()
    assert answers == {"nul-job": 404, "bad-hash": 400, "hex-upper": 400}
    source = tmp_path / "n.bin"
    source.write_bytes(b"named with a NUL")
    stored = upload(FilesPeer(f"tcp://127.0.0.1:{bare_channel.port}"), source, name="a\x00b.bin")
    fetched = download(FilesPeer(f"tcp://127.0.0.1:{bare_channel.port}"), tmp_path / "back.bin", sha256=stored.sha256)
    assert fetched.name == "a\ufffdb.bin"
