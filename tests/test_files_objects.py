"""The local object store (ffrtmp/files/objects.py): verified objects only, partials resumable, sizes kept."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import MasterUnreachable
from ffrtmp.files.objects import LocalObjects, ObjectMismatch
from ffrtmp.files.transfer import FilesPeer, PeerMoved, upload
from ffrtmp.master.filechannel import FileChannel, FilesOptions
from ffrtmp.master.store import open_store
from ffrtmp.worker.fetch import DataChannel
from tests.test_transport import free_port

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_an_object_appears_only_once_verified_and_a_partial_resumes(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    incoming = objects.receive("k1", SHA, len(DATA))
    incoming.write(0, DATA[:100_000])
    incoming.close()
    assert objects.size_of(SHA) is None and objects.used_bytes() == 100_000
    resumed = objects.receive("k1", SHA, len(DATA))
    assert resumed.offset == 100_000
    with pytest.raises(ValueError, match="expected 100000"):
        resumed.write(0, DATA[:10])
    resumed.write(100_000, DATA[100_000:])
    resumed.commit()
    assert objects.size_of(SHA) == len(DATA) and objects.used_bytes() == len(DATA)
    reader = objects.open(SHA)
    assert reader.read(1000, 10) == DATA[1000:1010]
    reader.close()
    assert list((tmp_path / "incoming").iterdir()) == []


def test_a_mismatch_discards_the_partial(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    incoming = objects.receive("k1", "0" * 64, len(DATA))
    incoming.write(0, DATA)
    with pytest.raises(ObjectMismatch, match="SHA-256"):
        incoming.commit()
    short = objects.receive("k2", SHA, len(DATA))
    short.write(0, DATA[:10])
    with pytest.raises(ObjectMismatch, match="10 bytes came"):
        short.commit()
    with pytest.raises(ObjectMismatch, match="more than"):
        objects.receive("k3", SHA, 5).write(0, DATA[:6])
    assert objects.size_of("0" * 64) is None and objects.size_of(SHA) is None
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == ["k3"]


def test_the_same_bytes_twice_are_kept_once_and_removal_frees_them(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    for key in ("tenant-a", "tenant-b"):
        incoming = objects.receive(key, SHA, len(DATA))
        incoming.write(0, DATA)
        incoming.commit()
    assert objects.used_bytes() == len(DATA)
    assert objects.remove(SHA) and not objects.remove(SHA)
    assert objects.used_bytes() == 0 and LocalObjects(tmp_path).used_bytes() == 0
    with pytest.raises(ValueError):
        objects.receive("../escape", SHA, 1)
    with pytest.raises(ValueError):
        objects.path_of("../../etc/passwd")


def test_old_partials_are_dropped(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    objects.receive("old", SHA, len(DATA)).write(0, DATA[:10])
    os.utime(tmp_path / "incoming" / "old", (time.time() - 100, time.time() - 100))
    objects.receive("new", SHA, len(DATA)).write(0, DATA[:10])
    assert objects.drop_incoming(50) == 1
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == ["new"]


def _channel(tmp_path: Path, leading: threading.Event, **options: float) -> FileChannel:
    db = tmp_path / "master.db"
    open_store(db, 0).close()
    return FileChannel(f"tcp://127.0.0.1:{free_port()}", None, None, LocalObjects(tmp_path / "files"),
                       lambda: open_store(db, 0), None, leading.is_set, FilesOptions(**options))


def test_a_standby_master_answers_503(tmp_path: Path) -> None:
    leading = threading.Event()
    channel = _channel(tmp_path, leading)
    channel.start()
    try:
        source = tmp_path / "a.bin"
        source.write_bytes(DATA)
        peer = FilesPeer(f"tcp://127.0.0.1:{channel.port}")
        with pytest.raises(MasterUnreachable, match="standby"):
            upload(peer, source)
        leading.set()
        assert upload(peer, source).sent == len(DATA)
    finally:
        channel.stop()


def test_retention_removes_unkept_files_only_on_the_leader(tmp_path: Path) -> None:
    leading = threading.Event()
    channel = _channel(tmp_path, leading, retention=100.0)
    store = open_store(tmp_path / "master.db", 0)
    try:
        incoming = channel.objects.receive("k", SHA, len(DATA))
        incoming.write(0, DATA)
        incoming.commit()
        now = time.time()
        with store.transaction():
            store.put_file("t1", SHA, len(DATA), "a.bin", now - 200)
        assert channel.collect(now) == 0  # a standby collects nothing
        leading.set()
        assert channel.collect(now) == 1
        assert channel.objects.size_of(SHA) is None and store.find_file("t1", SHA) is None
    finally:
        channel.socket.close()
        channel.desk.close()
        store.close()


def test_a_workers_upload_follows_a_failover_instead_of_waiting_out_its_timeout(tmp_path: Path) -> None:
    """The upload waits on a master that died (nothing listens); a WELCOME from the new leader names its data
    channel, and the upload goes there at once (the transfer timeout here is 30 s: a test that waited it out
    would fail its 10 s deadline)."""
    leading = threading.Event()
    leading.set()
    channel = _channel(tmp_path, leading)
    channel.start()
    try:
        source = tmp_path / "a.bin"
        source.write_bytes(DATA)
        data = DataChannel(timeout=30.0)
        data.welcomed(f"tcp://127.0.0.1:{free_port()}", {"files_port": free_port()})  # the dead master's
        done: dict[str, Any] = {}
        waiting = threading.Event()

        def asked(moved: Callable[[], bool]) -> bool:
            waiting.set()  # asked only in a silence: the upload is waiting on the dead channel
            return moved()

        started = time.monotonic()
        uploader = threading.Thread(target=lambda: done.update(stored=data.following(
            lambda peer, moved: upload(peer, source, moved=lambda: asked(moved)))))
        uploader.start()
        assert waiting.wait(10)
        data.welcomed("tcp://127.0.0.1:1", {"files_port": channel.port})  # the new leader's WELCOME
        uploader.join(10)
        assert not uploader.is_alive(), "the upload went on waiting on the dead master"
        assert done["stored"].sha256 == SHA and time.monotonic() - started < 10
    finally:
        channel.stop()


def test_a_transfer_told_its_master_moved_ends_with_peer_moved(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(DATA)
    with pytest.raises(PeerMoved):
        upload(FilesPeer(f"tcp://127.0.0.1:{free_port()}"), source, timeout=30.0, moved=lambda: True)
