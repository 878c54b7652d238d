"""Files over the HTTPS API with real curl (docs/http_api.md, "Files"): PUT stores by SHA-256 and resumes with
Content-Range, HEAD tells held or how far a partial got, GET downloads with Range; the same tenants, roles and
limits as the data channel (one set of rules: filedesk.py)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.master.store import open_store
from tests.conftest import eventually
from tests.httpapi import Curl, http_master
from tests.test_http_api import make_keys

DATA = os.urandom(3000)
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def curl(api: Curl, method: str, path: str, key: str | None, *args: str, output: Path | None = None) -> Answer:
    """curl with its body kept as bytes (`-T FILE` uploads, `-I` is HEAD; `output`: where the body goes)."""
    with tempfile.TemporaryDirectory() as scratch:
        body_path = output or Path(scratch) / "body"
        argv = ["curl", "-sS", "--cacert", str(api.cacert), "-D", "-", "--max-time", "20"]
        if method == "HEAD":
            argv.append("-I")  # no body: curl would write the headers again to -o
        else:
            argv += ["-o", str(body_path)]
        if method not in ("GET", "HEAD"):
            argv += ["-X", method]
        if key is not None:
            argv += ["-H", f"Authorization: Bearer {key}"]
        done = subprocess.run([*argv, *args, api.base + path], capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        body = body_path.read_bytes() if body_path.exists() else b""
    head = done.stdout.decode().replace("\r\n", "\n").strip().split("\n\n")[-1]  # the last (after a 100 Continue)
    lines = head.split("\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body)


def put(api: Curl, key: str | None, data: bytes, tmp: Path, sha256: str = SHA, *headers: str,
        name: str = "clip.bin") -> Answer:
    source = tmp / f"upload-{hashlib.sha256(data).hexdigest()[:8]}"
    source.write_bytes(data)
    extra = [arg for header in headers for arg in ("-H", header)]
    return curl(api, "PUT", f"/api/files/{sha256}?name={name}", key, "-T", str(source), *extra)


@pytest.fixture
def files_master(tmp_path: Path, request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Curl, dict[str, str], Path]]:
    """A master with a file store: SQLite and a directory, or (param "postgresql+s3", as several masters run)
    PostgreSQL and a bucket on moto's S3 server."""
    where: dict[str, Any] = {}
    db: str | Path = tmp_path / "master" / "master.db"
    if getattr(request, "param", "sqlite+directory") == "postgresql+s3":
        db = request.getfixturevalue("postgres_url")
        monkeypatch.setattr("ffrtmp.defaults.S3_ENDPOINT", request.getfixturevalue("s3_endpoint"))
        where = {"db": db, "files_dir": f"s3://{request.getfixturevalue('bucket')[1]}/cluster/files"}
    submit_a, read_a, submit_b, submit_q = make_keys(tmp_path, ("submit", "a"), ("read", "a"), ("submit", "b"),
                                                     ("submit", "q"), db=db)
    store = open_store(db, 0)
    with store.transaction():
        store.set_bytes_quota("q", 1000)
    store.close()
    keys = {"a": submit_a, "read_a": read_a, "b": submit_b, "q": submit_q}
    with http_master(tmp_path, master={"files_port": -1, "files_max_bytes": 1_000_000, **where}) as (_, api):
        yield api, keys, tmp_path / "master" / "files"


ON_EVERY_STORE = pytest.mark.parametrize("files_master", ["sqlite+directory", "postgresql+s3"], indirect=True)
"""The tests that run on a master of SQLite and a directory, and again on one of PostgreSQL and a bucket."""


@ON_EVERY_STORE
def test_an_upload_is_stored_once_and_downloads_whole_or_by_range(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    first = put(api, keys["a"], DATA, tmp_path)
    assert first.status == 201 and first.json() == {"sha256": SHA, "size": len(DATA), "name": "clip.bin"}
    again = put(api, keys["a"], DATA, tmp_path)
    assert again.status == 200 and again.json() == first.json()

    head = curl(api, "HEAD", f"/api/files/{SHA}", keys["a"])
    assert head.status == 200 and head.headers["content-length"] == str(len(DATA))
    whole = curl(api, "GET", f"/api/files/{SHA}", keys["read_a"])
    assert whole.status == 200 and hashlib.sha256(whole.body).hexdigest() == SHA
    assert whole.headers["etag"] == f'"{SHA}"' and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["content-disposition"] == "attachment; filename=\"clip.bin\"; filename*=UTF-8''clip.bin"

    span = curl(api, "GET", f"/api/files/{SHA}", keys["a"], "-H", "Range: bytes=100-199")
    assert (span.status, span.body, span.headers["content-range"]) == (206, DATA[100:200], "bytes 100-199/3000")
    tail = curl(api, "GET", f"/api/files/{SHA}", keys["a"], "-H", "Range: bytes=-10")
    assert (tail.status, tail.body, tail.headers["content-range"]) == (206, DATA[-10:], "bytes 2990-2999/3000")
    rest = curl(api, "GET", f"/api/files/{SHA}", keys["a"], "-H", "Range: bytes=2500-")
    assert (rest.status, rest.body) == (206, DATA[2500:])
    past = curl(api, "GET", f"/api/files/{SHA}", keys["a"], "-H", "Range: bytes=3000-3100")
    assert past.status == 416 and past.headers["content-range"] == "bytes */3000" and past.json()["field"] == "Range"

    partial = tmp_path / "partial.bin"  # curl -C - resumes a download from the length of what it has
    partial.write_bytes(DATA[:1234])
    resumed = curl(api, "GET", f"/api/files/{SHA}", keys["a"], "-C", "-", output=partial)
    assert resumed.status == 206 and partial.read_bytes() == DATA


def test_names_are_quoted_safely_in_content_disposition(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    data = b"name test"
    sha = hashlib.sha256(data).hexdigest()
    assert put(api, keys["a"], data, tmp_path, sha, name="%C3%A9t%C3%A9%20%22x%22.mp4").status == 201
    shown = curl(api, "HEAD", f"/api/files/{sha}", keys["a"])
    assert shown.headers["content-disposition"] == (
        "attachment; filename=\"_t_ _x_.mp4\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.mp4")


def test_a_name_that_is_no_file_name_is_400_naming_it(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    for name in ("..%2Fx.mp4", "%2Fetc%2Fpasswd", "..", "x" * 256, "a%00b.mp4", "a%01b", "%FF.mp4"):
        refused = put(api, keys["a"], DATA, tmp_path, name=name)
        assert refused.status == 400 and refused.json()["field"] == "name", name
    kept = put(api, keys["a"], DATA, tmp_path, name="take%5C1.mp4")  # a backslash is a file name's character
    assert kept.status == 201 and kept.json()["name"] == "take\\1.mp4"


def test_bytes_that_do_not_hash_to_the_name_are_422_and_nothing_is_stored(files_master: Any, tmp_path: Path) -> None:
    api, keys, files = files_master
    wrong = put(api, keys["a"], DATA[:-1] + b"!", tmp_path)
    assert wrong.status == 422 and "nothing was stored" in wrong.json()["error"]
    head = curl(api, "HEAD", f"/api/files/{SHA}", keys["a"])
    assert head.status == 404 and "upload-offset" not in head.headers
    assert not any(files.glob("objects/*/*")) and not any(files.glob("incoming/*"))


@pytest.mark.parametrize("files_master", ["postgresql+s3"], indirect=True)
def test_on_postgresql_and_a_bucket_the_bytes_go_to_the_bucket_and_the_record_to_the_database(
        files_master: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What lets a second master serve the file: nothing of it stays on this master's disk."""
    api, keys, local = files_master
    assert put(api, keys["a"], DATA, tmp_path).status == 201
    client, name = request.getfixturevalue("bucket")
    listed = client.list_objects_v2(Bucket=name, Prefix="cluster/files/").get("Contents", [])
    assert [(item["Key"], item["Size"]) for item in listed] == [(f"cluster/files/objects/{SHA[:2]}/{SHA}", len(DATA))]
    store = open_store(request.getfixturevalue("postgres_url"), 0)
    try:
        assert store.find_file("a", SHA) is not None and store.find_file("b", SHA) is None
    finally:
        store.close()
    assert not local.exists() or not any(path.is_file() for path in local.rglob("*"))


@ON_EVERY_STORE
def test_an_upload_resumes_where_its_partial_stopped(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    part = put(api, keys["a"], DATA[:1000], tmp_path, SHA, "Content-Range: bytes 0-999/3000")
    assert part.status == 202 and part.headers["upload-offset"] == "1000" and part.json()["offset"] == 1000
    head = curl(api, "HEAD", f"/api/files/{SHA}", keys["a"])
    assert head.status == 404 and head.headers["upload-offset"] == "1000"
    assert "upload-offset" not in curl(api, "HEAD", f"/api/files/{SHA}", keys["b"]).headers  # a's partial only

    wrong = put(api, keys["a"], DATA[1500:], tmp_path, SHA, "Content-Range: bytes 1500-2999/3000")
    assert wrong.status == 409 and wrong.headers["upload-offset"] == "1000"
    assert wrong.json()["field"] == "Content-Range" and "resumes at byte 1000" in wrong.json()["error"]
    assert wrong.json()["offset"] == 1000
    rest = put(api, keys["a"], DATA[1000:], tmp_path, SHA, "Content-Range: bytes 1000-2999/3000")
    assert rest.status == 201 and rest.json()["size"] == 3000
    assert curl(api, "GET", f"/api/files/{SHA}", keys["a"]).body == DATA


@ON_EVERY_STORE
def test_a_cut_connection_keeps_the_partial_for_a_resume(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    context = ssl.create_default_context(cafile=str(api.cacert))
    port = int(api.base.rsplit(":", 1)[1])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="localhost") as conn:
        conn.sendall(f"PUT /api/files/{SHA}?name=cut.bin HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                     f"{keys['a']}\r\nContent-Length: {len(DATA)}\r\n\r\n".encode() + DATA[:1700])

        def offset() -> str | None:
            return curl(api, "HEAD", f"/api/files/{SHA}", keys["a"]).headers.get("upload-offset")

        eventually(lambda: offset() == "1700", message="the bytes sent to be written")
    def resume() -> Answer | None:  # 409 only while the master has not yet seen the connection go
        answer = put(api, keys["a"], DATA[1700:], tmp_path, SHA, "Content-Range: bytes 1700-2999/3000")
        return answer if answer.status != 409 else None

    assert eventually(resume, message="the cut connection's upload to end").status == 201
    assert curl(api, "GET", f"/api/files/{SHA}", keys["a"]).body == DATA


@ON_EVERY_STORE
def test_tenants_roles_quotas_and_bad_requests(files_master: Any, tmp_path: Path) -> None:
    api, keys, _ = files_master
    assert put(api, keys["a"], DATA, tmp_path).status == 201
    assert curl(api, "GET", f"/api/files/{SHA}", keys["b"]).status == 404  # another tenant's file does not exist
    assert curl(api, "HEAD", f"/api/files/{SHA}", keys["b"]).status == 404
    refused = put(api, keys["read_a"], DATA, tmp_path)
    assert refused.status == 403 and "may not upload" in refused.json()["error"]
    assert put(api, None, DATA, tmp_path).status == 401

    over = put(api, keys["q"], DATA, tmp_path)
    assert over.status == 429 and over.json()["error"].startswith("tenant 'q' may store 1000 bytes and holds 0")
    big = os.urandom(1_000_001)
    full = put(api, keys["b"], big, tmp_path, hashlib.sha256(big).hexdigest())
    assert full.status == 507 and "the file store is full" in full.json()["error"]

    bad = put(api, keys["a"], DATA, tmp_path, "NOT-A-HASH")
    assert bad.status == 400 and bad.json()["field"] == "sha256"
    chunked = curl(api, "PUT", f"/api/files/{SHA}", keys["a"], "-H", "Transfer-Encoding: chunked",
                   "--data-binary", "abc")
    assert chunked.status == 411 and chunked.json()["field"] == "Content-Length"
    assert put(api, keys["a"], DATA[:10], tmp_path, SHA, "Content-Range: bytes 0-99/3000").status == 400
    assert curl(api, "GET", f"/api/jobs/{'f' * 12}/output", keys["a"]).status == 404
    job_id = api.post("/api/jobs", key=keys["a"], body={"scenario": "null", "engine": "ffmpeg"}).json()["ids"][0]
    none = curl(api, "GET", f"/api/jobs/{job_id}/output", keys["a"])
    assert none.status == 404 and none.json()["error"] == f"job {job_id} has no stored output file"
    assert curl(api, "GET", f"/api/jobs/{job_id}/output?which=sideways", keys["a"]).json()["field"] == "which"


def test_a_damaged_stored_file_is_removed_when_read_and_stored_again_on_upload(files_master: Any,
                                                                               tmp_path: Path) -> None:
    api, keys, files = files_master
    assert put(api, keys["a"], DATA, tmp_path).status == 201
    (stored,) = files.glob(f"objects/*/{SHA}")
    stored.write_bytes(DATA[:-1] + b"?")  # the disk changed it
    damaged = curl(api, "GET", f"/api/files/{SHA}", keys["a"])
    assert damaged.status == 404 and "damaged in the master's store and removed" in damaged.json()["error"]
    assert not stored.exists() and curl(api, "HEAD", f"/api/files/{SHA}", keys["a"]).status == 404
    assert put(api, keys["a"], DATA, tmp_path).status == 201  # stored again, not "already held"
    assert curl(api, "GET", f"/api/files/{SHA}", keys["a"]).body == DATA

    big = os.urandom(300 * 1024)  # past one chunk: the headers are out when the damage shows, so the end is cut
    big_sha = hashlib.sha256(big).hexdigest()
    assert put(api, keys["a"], big, tmp_path, big_sha).status == 201
    (stored,) = files.glob(f"objects/*/{big_sha}")
    stored.write_bytes(big[:-1] + bytes([big[-1] ^ 1]))
    cut = subprocess.run(["curl", "-sS", "--cacert", str(api.cacert), "-H", f"Authorization: Bearer {keys['a']}",
                          "-o", str(tmp_path / "cut.bin"), f"{api.base}/api/files/{big_sha}"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert cut.returncode == 18, cut.stderr  # CURLE_PARTIAL_FILE: fewer bytes than Content-Length
    assert (tmp_path / "cut.bin").stat().st_size < len(big) and not stored.exists()


def test_a_file_past_the_apis_body_cap_streams_in_and_out(tmp_path: Path) -> None:
    from ffrtmp import defaults

    data = os.urandom(defaults.API_MAX_BODY + 3 * 2**20)  # curl sends Expect: 100-continue for it, too
    sha = hashlib.sha256(data).hexdigest()
    (key,) = make_keys(tmp_path, ("submit", "default"))
    with http_master(tmp_path, master={"files_port": -1}) as (_, api):
        assert put(api, key, data, tmp_path, sha).status == 201
        fetched = curl(api, "GET", f"/api/files/{sha}", key)
        assert fetched.status == 200 and hashlib.sha256(fetched.body).hexdigest() == sha


def test_a_master_without_a_file_store_says_so(tmp_path: Path) -> None:
    (key,) = make_keys(tmp_path, ("submit", "default"))
    with http_master(tmp_path) as (_, api):
        answer = put(api, key, DATA, tmp_path)
        assert answer.status == 404 and "no file store" in answer.json()["error"]


@pytest.mark.slow
def test_a_job_reads_an_uploaded_input_and_its_output_downloads(tmp_path: Path, ffmpeg: str) -> None:
    """Upload with PUT, submit naming it as `input_file`, a real worker fetches and encodes it, and the output
    downloads over HTTP with the SHA-256 the job shows."""
    clip = tmp_path / "in.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:"
                    "duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", f"file:{clip}"],
                   check=True, timeout=60)
    data = clip.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key, admin, other, worker = make_keys(tmp_path, ("submit", "alpha"), ("admin", "default"), ("read", "beta"),
                                          ("worker", "*"))
    with http_master(tmp_path, master={"files_port": -1}) as (cluster, api):
        cluster.add_worker("w1", api_key=worker)
        eventually(lambda: [n["status"] for n in api.get("/api/nodes", key=admin).json()["nodes"]] == ["online"],
                   timeout=20, message="the worker to join")
        stored = put(api, key, data, tmp_path, sha, name="in.mp4").json()
        job = {"scenario": "files", "engine": "ffmpeg", "resolution": "160x120", "fps": 10, "duration": 1,
               "bitrate": "100k", "codec": "h264", "max_retries": 0, "input_file": stored}
        job_id = api.post("/api/jobs", key=key, body=job).json()["ids"][0]
        done = eventually(lambda: (shown := api.get(f"/api/jobs/{job_id}", key=key).json())["status"] in (
            "completed", "failed") and shown, timeout=60, message="the job to end")
        assert done["status"] == "completed", done
        assert done["files"]["input"] == stored
        output = done["files"]["output"]

        fetched = curl(api, "GET", f"/api/jobs/{job_id[:10]}/output", key)  # a prefix, as for GET /api/jobs/{id}
        assert fetched.status == 200 and hashlib.sha256(fetched.body).hexdigest() == output["sha256"]
        assert len(fetched.body) == output["size"] and output["name"] in fetched.headers["content-disposition"]
        source = curl(api, "GET", f"/api/jobs/{job_id}/output?which=input", key)
        assert source.status == 200 and source.body == data
        assert curl(api, "GET", f"/api/jobs/{job_id}/output", admin).status == 200  # an admin sees every tenant
        hidden = curl(api, "GET", f"/api/jobs/{job_id}/output", other)
        assert hidden.status == 404 and hidden.json()["error"] == f"no job {job_id!r}"  # another tenant's job
        assert curl(api, "GET", f"/api/files/{output['sha256']}", other).status == 404


def test_a_standby_answers_503_naming_the_leader(tmp_path: Path) -> None:
    import threading

    from ffrtmp.master.server import MasterOptions, MasterServer

    (key,) = make_keys(tmp_path, ("submit", "default"))
    with http_master(tmp_path, master={"files_port": -1, "name": "m1"}) as (cluster, leader):
        standby = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / "m2", metrics=False,
                                             db=tmp_path / "master" / "master.db", api_port=-1, api_bind="127.0.0.1",
                                             files_port=-1, name="m2"))
        thread = threading.Thread(target=standby.run, name="standby", daemon=True)
        thread.start()
        try:
            assert standby.api is not None
            api = Curl(f"https://localhost:{standby.api.port}", tmp_path / "m2" / "api-cert.pem")
            for answer in (put(api, key, DATA, tmp_path), curl(api, "GET", f"/api/files/{SHA}", key),
                           curl(api, "GET", f"/api/jobs/{'a' * 12}/output", key)):
                assert answer.status == 503 and answer.headers["retry-after"] == "1"
                assert f"the leader is {cluster.server.advertise}" in answer.json()["error"]
            assert put(leader, key, DATA, tmp_path).status == 201
        finally:
            standby.stop_event.set()
            thread.join(timeout=15)
