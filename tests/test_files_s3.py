"""The object store in an S3-compatible bucket, against moto's S3 server run as a real process on a free port.

The contract (docs/files.md, "The store") is checked on both backends alike, the directory and the bucket: an
object is visible only once all its bytes came and their SHA-256 matched; a mismatch leaves nothing; a resume
goes on where it stopped. Then what only the bucket does: multipart parts, an upload a gone master left.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.files.backends import open_object_store
from ffrtmp.files.objects import LocalObjects, ObjectMismatch, ObjectStore
from ffrtmp.files.s3 import PART_SIZE, S3Objects, part_size_for
from ffrtmp.files.sha256_state import ResumableSha256
from ffrtmp.files.transfer import FilesPeer, upload
from ffrtmp.local import wait_for
from ffrtmp.master.filechannel import FileChannel, FilesOptions
from ffrtmp.master.store import open_store
from tests.test_transport import free_port

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

CHUNK = 256 * 1024
CHUNK = 256 * 1024


@pytest.fixture(params=["directory", "bucket"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "directory":
        return LocalObjects(tmp_path / "files")
    client, name = request.getfixturevalue("bucket")
    return S3Objects(client, name, "cluster-1/files")


def blob(size: int, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(store: ObjectStore, data: bytes, key: str = "up-1", upto: int | None = None,
         announced: str | None = None) -> Any:
    """Start (or resume) an upload of `data` and send it from where the store has it, up to `upto` bytes."""
    incoming = store.receive(key, announced or sha(data), len(data))
    end = len(data) if upto is None else upto
    while incoming.offset < end:
        incoming.write(incoming.offset, data[incoming.offset:min(incoming.offset + CHUNK, end)])
    return incoming


def read_all(store: ObjectStore, digest: str) -> bytes:
    reader = store.open(digest)
    try:
        return b"".join(reader.read(offset, CHUNK) for offset in range(0, reader.size, CHUNK))
    finally:
        reader.close()


@pytest.mark.parametrize("size", [0, 1000, PART_SIZE + 3 * CHUNK + 7])
def test_an_object_appears_only_once_verified_and_reads_back_whole(store: ObjectStore, size: int) -> None:
    data = blob(size)
    incoming = send(store, data)
    assert store.size_of(sha(data)) is None  # every byte came, not yet verified: not visible
    incoming.commit()
    assert store.size_of(sha(data)) == size
    assert read_all(store, sha(data)) == data
    assert store.used_bytes() == size
    reader = store.open(sha(data))  # out of order too (a resumed download starts at its own length)
    try:
        assert reader.read(size // 2, 100) == data[size // 2:size // 2 + 100]
        assert reader.read(0, 10) == data[:10]
        assert reader.read(size, 10) == b""
    finally:
        reader.close()


@pytest.mark.parametrize("wrong", ["hash", "short"])
def test_a_mismatch_leaves_nothing_visible_and_nothing_held(store: ObjectStore, wrong: str) -> None:
    data = blob(PART_SIZE + CHUNK)
    if wrong == "hash":
        incoming = send(store, data, announced=sha(data[:-1] + b"x"))
    else:
        incoming = send(store, data, upto=len(data) - 1)
    with pytest.raises(ObjectMismatch):
        incoming.commit()
    assert store.size_of(sha(data)) is None
    assert store.used_bytes() == 0
    assert store.receive("up-1", sha(data), len(data)).offset == 0  # the partial went with it


def test_an_interrupted_upload_resumes_where_it_stopped(store: ObjectStore) -> None:
    data = blob(PART_SIZE + 5 * CHUNK + 11, seed=2)
    send(store, data, upto=PART_SIZE + 2 * CHUNK).close()  # the sender dropped
    resumed = store.receive("up-1", sha(data), len(data))
    assert resumed.offset == PART_SIZE + 2 * CHUNK  # not a byte to send again
    send(store, data).commit()
    assert read_all(store, sha(data)) == data


def test_bytes_stored_already_are_kept_once(store: ObjectStore) -> None:
    data = blob(3000, seed=3)
    send(store, data, key="tenant-a").commit()
    send(store, data, key="tenant-b").commit()
    assert store.used_bytes() == 3000
    assert store.remove(sha(data)) and not store.remove(sha(data))
    assert store.size_of(sha(data)) is None and store.used_bytes() == 0
    with pytest.raises(FileNotFoundError):
        store.open(sha(data))


# ---- what only the bucket does -------------------------------------------------------------------------


def unfinished(client: Any, name: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    return uploads


def test_a_large_object_goes_up_in_parts_and_is_a_multipart_upload_until_commit(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    store = S3Objects(client, name, "p")
    data = blob(2 * PART_SIZE + CHUNK, seed=4)
    incoming = send(store, data)
    assert [u["Key"] for u in unfinished(client, name)] == [f"p/objects/{sha(data)[:2]}/{sha(data)}"]
    assert client.list_objects_v2(Bucket=name, Prefix="p/objects/").get("KeyCount") == 0
    assert keys_under(client, name, "p/incoming/") == ["p/incoming/up-1.json"]  # for another master to go on
    incoming.commit()
    assert unfinished(client, name) == [] and keys_under(client, name, "p/incoming/") == []
    head = client.head_object(Bucket=name, Key=f"p/objects/{sha(data)[:2]}/{sha(data)}", PartNumber=1)
    assert head["PartsCount"] == 3 and head["ContentLength"] == PART_SIZE
    assert S3Objects(client, name, "p").used_bytes() == len(data)  # a new master counts what is stored


def keys_under(client: Any, bucket: str, prefix: str) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_an_upload_a_gone_master_left_is_taken_over_from_its_last_whole_part(bucket: tuple[Any, str]) -> None:
    """A failover: the next master resumes from the parts S3 holds and the SHA-256 state saved after them (the
    dead master's unsent tail, up to a part, is sent again); the object is checked whole as ever."""
    client, name = bucket
    data = blob(2 * PART_SIZE + CHUNK, seed=5)
    send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()  # its master died here
    after = S3Objects(client, name)
    assert after.received("up-1") == PART_SIZE  # what a client's HEAD or put learns
    resumed = after.receive("up-1", sha(data), len(data))
    assert resumed.offset == PART_SIZE and after.used_bytes() == PART_SIZE
    send(after, data).commit()
    assert read_all(after, sha(data)) == data
    assert unfinished(client, name) == [] and keys_under(client, name, "incoming/") == []


def test_a_taken_over_upload_with_a_wrong_state_or_a_gone_upload_is_never_stored_wrong(
        bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, name = bucket
    data = blob(PART_SIZE + CHUNK, seed=7)
    send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()
    state_key = "incoming/up-1.json"
    saved = json.loads(client.get_object(Bucket=name, Key=state_key)["Body"].read())
    other = ResumableSha256()
    other.update(bytes(PART_SIZE))  # a state of as many bytes, but other ones: it passes every check but the last
    client.put_object(Bucket=name, Key=state_key, Body=json.dumps({**saved, "state": other.state()}).encode())
    resumed = S3Objects(client, name).receive("up-1", sha(data), len(data))
    assert resumed.offset == PART_SIZE
    with pytest.raises(ObjectMismatch, match="SHA-256"):
        send(resumed._owner, data).commit()
    assert S3Objects(client, name).size_of(sha(data)) is None and unfinished(client, name) == []

    for forged in ({**saved, "state": ResumableSha256().state()},  # counters of 0 bytes: refused, from 0
                   {**saved, "part_size": 2**40}, {k: v for k, v in saved.items() if k != "part_size"},
                   {**saved, "parts": [{**saved["parts"][0], "PartNumber": 7}]}, "not json", {"state": 5}):
        send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()
        client.put_object(Bucket=name, Key=state_key, Body=json.dumps(forged).encode())
        assert S3Objects(client, name).receive("up-1", sha(data), len(data)).offset == 0, forged
        S3Objects(client, name).drop_incoming(0)

    send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()
    S3Objects(client, name).drop_incoming(0)  # the retention aborts the gone master's upload, state included
    assert keys_under(client, name, "incoming/") == []
    send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()
    for left in unfinished(client, name):  # aborted behind the state's back: the state is not trusted
        client.abort_multipart_upload(Bucket=name, Key=left["Key"], UploadId=left["UploadId"])
    fresh = S3Objects(client, name)
    assert fresh.receive("up-1", sha(data), len(data)).offset == 0 and keys_under(client, name, "incoming/") == []
    send(fresh, data).commit()
    assert read_all(fresh, sha(data)) == data

    monkeypatch.setattr("ffrtmp.files.s3.resumable", lambda: None)  # an OpenSSL without SHA256_Init: from 0
    other = blob(PART_SIZE + CHUNK, seed=8)
    send(S3Objects(client, name), other, key="up-2", upto=PART_SIZE + CHUNK // 2).close()
    assert S3Objects(client, name).receive("up-2", sha(other), len(other)).offset == 0


def test_kept_uploads_are_aborted_after_the_retention(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    store = S3Objects(client, name)
    data = blob(PART_SIZE + CHUNK, seed=6)
    send(store, data, upto=PART_SIZE + CHUNK // 2).close()
    assert store.used_bytes() == PART_SIZE + CHUNK // 2
    assert store.drop_incoming(3600) == 0
    assert store.drop_incoming(0) == 1
    assert unfinished(client, name) == [] and store.used_bytes() == 0
    assert store.receive("up-1", sha(data), len(data)).offset == 0


def test_part_sizes_stay_within_s3s_limits() -> None:
    assert part_size_for(1) == PART_SIZE
    assert part_size_for(10 * 2**40) * 10_000 >= 10 * 2**40 and part_size_for(10 * 2**40) % 2**20 == 0


def test_files_chooses_the_backend_and_a_bad_bucket_is_a_clear_error(bucket: tuple[Any, str], s3_endpoint: str,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, name = bucket
    monkeypatch.setattr("ffrtmp.defaults.S3_ENDPOINT", s3_endpoint)  # as FFRTMP_S3_ENDPOINT sets it
    chosen = open_object_store(f"s3://{name}/some/prefix/")
    assert isinstance(chosen, S3Objects) and chosen.prefix == "some/prefix/"
    assert isinstance(open_object_store(str(tmp_path / "dir")), LocalObjects)
    for url, problem in ((f"s3://nope-{name}/x", "cannot be used"), ("s3:///x", "must be s3://BUCKET/PREFIX")):
        with pytest.raises(InvalidInput) as error:
            open_object_store(url)
        assert error.value.field == "files" and problem in str(error.value)


def test_a_client_upload_cut_on_one_master_resumes_on_the_next_from_the_bucket(bucket: tuple[Any, str],
                                                                             tmp_path: Path) -> None:
    """Two masters' data channels on one bucket: the client's upload to the first is cut once a part is up
    (the master is gone, and its memory with it); rerun against the second, it sends only what follows the
    last whole part."""
    client, name = bucket
    data = blob(2 * PART_SIZE + CHUNK, seed=9)
    source = tmp_path / "clip.bin"
    source.write_bytes(data)
    db = tmp_path / "master.db"
    open_store(db, 0).close()

    def channel() -> FileChannel:
        made = FileChannel(f"tcp://127.0.0.1:{free_port()}", None, None, S3Objects(client, name, "c"),
                           lambda: open_store(db, 0), None, lambda: True, FilesOptions())
        made.start()
        return made

    class Cut(Exception):
        pass

    def cut(done: int, total: int) -> None:
        if done >= PART_SIZE + 4 * CHUNK:
            raise Cut

    first = channel()
    try:
        with pytest.raises(Cut):
            upload(FilesPeer(f"tcp://127.0.0.1:{first.port}"), source, progress=cut)
        wait_for(lambda: keys_under(client, name, "c/incoming/"), 10, "the first part's state in the bucket")
    finally:
        first.stop()
    second = channel()
    try:
        stored = upload(FilesPeer(f"tcp://127.0.0.1:{second.port}"), source)
    finally:
        second.stop()
    assert stored.sha256 == sha(data) and stored.sent == len(data) - PART_SIZE
    assert read_all(S3Objects(client, name, "c"), sha(data)) == data
    assert unfinished(client, name) == [] and keys_under(client, name, "c/incoming/") == []


def test_an_old_master_aborting_its_copy_leaves_the_upload_the_next_one_took_over(bucket: tuple[Any, str]) -> None:
    """The master an upload came from may live on (a standby) and abort its kept copy later (retention, the
    KEPT limit): the bucket's upload is the new master's now, so only the copy goes."""
    client, name = bucket
    data = blob(2 * PART_SIZE + CHUNK, seed=23)
    old = S3Objects(client, name)
    send(old, data, upto=PART_SIZE + CHUNK // 2).close()
    new = S3Objects(client, name)
    send(new, data, upto=PART_SIZE + CHUNK).close()  # taken over, cut again
    old.drop_incoming(0)
    assert new.receive("up-1", sha(data), len(data)).offset == PART_SIZE + CHUNK
    send(new, data).commit()
    assert read_all(new, sha(data)) == data and unfinished(client, name) == []


def test_an_upload_aborted_under_its_master_starts_again_instead_of_failing_for_ever(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    data = blob(3 * PART_SIZE, seed=25)
    store = S3Objects(client, name)
    send(store, data, upto=PART_SIZE + CHUNK).close()
    for left in unfinished(client, name):
        client.abort_multipart_upload(Bucket=name, Key=left["Key"], UploadId=left["UploadId"])
    with pytest.raises(Exception, match="UploadPart"):
        send(store, data)  # its next part meets the dead upload
    again = store.receive("up-1", sha(data), len(data))
    assert again.offset == 0 and store.used_bytes() == 0
    send(store, data).commit()
    assert read_all(store, sha(data)) == data


def test_two_threads_taking_over_one_upload_count_its_bytes_once(bucket: tuple[Any, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client, name = bucket
    data = blob(PART_SIZE + CHUNK, seed=24)
    send(S3Objects(client, name), data, upto=PART_SIZE + CHUNK // 2).close()
    store = S3Objects(client, name)
    real, both = S3Objects._saved, threading.Barrier(2, timeout=10)

    def saved(self: S3Objects, key: str) -> Any:
        found = real(self, key)
        both.wait()  # both threads read the state before either registers its take-over
        return found

    monkeypatch.setattr(S3Objects, "_saved", saved)
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(store.receive("up-1", sha(data), len(data))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert got[0] is got[1] and store.used_bytes() == PART_SIZE
    got[0].close()
    store.drop_incoming(0)
    assert store.used_bytes() == 0
