"""The object store in an S3-compatible bucket: `--files s3://BUCKET/PREFIX` (extra `ffrtmp[s3]`: boto3).

The layout is the directory store's, under PREFIX: `objects/ab/<sha256>`. An upload is an S3 multipart upload
to the object's own key, which S3 shows only once the upload is completed, and it is completed only after every
byte went through our SHA-256 and the size matched: a half-sent or corrupt file is never visible (docs/files.md).
Bytes go on in parts of PART_SIZE (S3's minimum, 5 MiB; more for files past 48 GiB, S3 takes 10,000 parts), so
a transfer holds at most one part in memory; a file smaller than one part is sent in one PUT at commit.

Resume: an upload interrupted here (a dropped client) stays open in this master's memory (its hash state, its
unsent tail; at most KEPT of them) and resumes exactly where it stopped. S3 cannot read back the parts of an
unfinished upload, so for another master to go on (a failover) each part sent is followed by a small state object,
`incoming/<upload key>.json`: the upload's id, its parts and the SHA-256 state after them (sha256_state.py). A
master that gets a `put` for an upload it does not hold takes it over from there, from the last whole part, once
S3 still lists those parts; else (or without a resumable SHA-256 in this Python's OpenSSL) it starts again from 0.
`drop_incoming` aborts what a gone master left in the bucket past the retention, its state objects included.

The bucket is reached at FFRTMP_S3_ENDPOINT when set, else where boto3's own settings say (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_PROFILE, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.files.objects import ObjectMismatch, valid_sha256
from ffrtmp.files.sha256_state import ResumableSha256, resumable

log = logging.getLogger("ffrtmp.master")

PART_SIZE = 5 * 2**20
"""S3's smallest part (all but the last): the most a transfer buffers."""
MAX_PARTS = 10_000
KEPT = 8
"""Interrupted uploads kept open for a resume at most (each holds up to a part); the oldest is aborted first."""
_KEY = re.compile(r"^[0-9A-Za-z._-]{1,200}$")
_MISSING = {"404", "NoSuchKey", "NotFound"}


def is_s3_url(files: str) -> bool:
    return files.lower().startswith("s3://")


def part_size_for(size: int) -> int:
    """PART_SIZE, or whole MiBs enough to send `size` bytes in MAX_PARTS parts."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS / 2**20) * 2**20)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code"))


def _missing(exc: Exception) -> bool:
    return _error_code(exc) in _MISSING


class _S3Reader:
    """A stored object, read through one streaming GET while reads follow on (a jump reopens at the offset)."""

    def __init__(self, owner: S3Objects, key: str) -> None:
        self._owner, self._key = owner, key
        got = owner.client.get_object(Bucket=owner.bucket, Key=key)
        self.size: int = int(got["ContentLength"])
        self._body: Any = got["Body"]
        self._position = 0

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        if offset != self._position or self._body is None:
            self.close()
            got = self._owner.client.get_object(Bucket=self._owner.bucket, Key=self._key, Range=f"bytes={offset}-")
            self._body, self._position = got["Body"], offset
        data: bytes = self._body.read(min(length, self.size - offset))
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None


class _S3Incoming:
    """An upload in progress: hashed as it comes, sent on a part at a time."""

    def __init__(self, owner: S3Objects, key: str, sha256: str, size: int) -> None:
        self._owner, self.key, self.sha256, self.size = owner, key, sha256, size
        hasher = resumable()
        self._hash: Any = hashlib.sha256() if hasher is None else hasher()
        """The SHA-256 of the parts sent (the unsent tail is hashed at commit): its state is a part boundary's."""
        self._buffer = bytearray()
        self._part_size = part_size_for(size)
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.offset = 0
        self.closed_at: float | None = None

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset != self.offset:
            raise ValueError(f"a chunk at offset {offset}, expected {self.offset}")
        if self.offset + len(data) > self.size:
            raise ObjectMismatch(f"more than the {self.size} bytes announced")
        self._buffer += data
        self.offset += len(data)
        self._owner._grew(len(data))
        while len(self._buffer) >= self._part_size:
            part = self._buffer  # sent as it is, not copied: a transfer holds about one part
            self._buffer = bytearray(part[self._part_size:])
            del part[self._part_size:]
            try:
                self._send_part(part)
            except BaseException:
                self._buffer = part + self._buffer  # kept: a resume sends the part again
                raise

    def _send_part(self, data: bytes | bytearray, last: bool = False) -> None:
        """Send one part; after a whole one (not the `last`, sent at commit), save the state for a takeover."""
        owner = self._owner
        if self._upload_id is None:
            self._upload_id = owner.client.create_multipart_upload(Bucket=owner.bucket, Key=owner.key_of(self.sha256)
                                                                   )["UploadId"]
        number = len(self._parts) + 1
        try:
            sent = owner.client.upload_part(Bucket=owner.bucket, Key=owner.key_of(self.sha256),
                                            UploadId=self._upload_id, PartNumber=number, Body=data)
        except Exception as exc:
            if _error_code(exc) == "NoSuchUpload" or self._gone():  # aborted under us (another master's
                self.forget()  # retention): a resume starts afresh instead of meeting the dead upload again
            raise
        self._hash.update(data)  # once it is up: a part sent again after a failure is hashed once
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"], "Size": len(data)})
        if not last:
            self.save()

    def _gone(self) -> bool:
        """Whether the bucket no longer lists this upload (S3 says NoSuchUpload; some S3 servers only fail)."""
        owner = self._owner
        try:
            pages = owner.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=owner.bucket, Prefix=owner.key_of(self.sha256))
            return all(left["UploadId"] != self._upload_id for page in pages for left in page.get("Uploads", []))
        except Exception:  # the bucket unreachable: the upload may well be there still
            return False

    def save(self) -> None:
        """The state another master takes the upload over from (after each part; never needed for correctness:
        a failure to write it only means a takeover starts from 0)."""
        if not isinstance(self._hash, ResumableSha256):
            return
        saved = {"sha256": self.sha256, "size": self.size, "upload_id": self._upload_id, "parts": self._parts,
                 "part_size": self._part_size, "state": self._hash.state(), "owner": self._owner.owner}
        try:
            self._owner.client.put_object(Bucket=self._owner.bucket, Key=self._owner.state_key(self.key),
                                          Body=json.dumps(saved).encode())
        except Exception as exc:  # botocore's errors
            log.warning("upload %s: its resume state was not written to the bucket (%s): another master would "
                        "start it again from 0", self.key, exc)

    def _digest_with(self, tail: bytes) -> str:
        hashed = self._hash.copy()
        hashed.update(tail)
        return str(hashed.hexdigest())

    def commit(self) -> None:
        owner, key = self._owner, self._owner.key_of(self.sha256)
        try:
            if self.offset != self.size:
                raise ObjectMismatch(f"{self.offset} bytes came, {self.size} were announced")
            digest = self._digest_with(bytes(self._buffer))
            if digest != self.sha256:
                raise ObjectMismatch(f"the bytes' SHA-256 is {digest}, not {self.sha256}")
            if owner.size_of(self.sha256) == self.size:  # the same bytes stored already: keep one copy
                self.abort()
                return
            if self._upload_id is None:
                owner.client.put_object(Bucket=owner.bucket, Key=key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer), last=True)
                owner.client.complete_multipart_upload(Bucket=owner.bucket, Key=key, UploadId=self._upload_id,
                                                       MultipartUpload={"Parts": [
                                                           {"PartNumber": part["PartNumber"], "ETag": part["ETag"]}
                                                           for part in self._parts]})
                self._upload_id = None
            self._buffer.clear()
        except BaseException:
            self.abort()
            raise
        owner._done(self)
        if owner.size_of(self.sha256) != self.size:  # what S3 assembled is not what came: take it back
            owner.client.delete_object(Bucket=owner.bucket, Key=key)
            owner._grew(-self.size)
            raise ObjectMismatch(f"the bucket holds another size than the {self.size} bytes sent")

    def close(self) -> None:
        self._owner._keep(self)

    def abort(self) -> None:
        owner = self._owner
        if self._upload_id is not None and owner.still_ours(self):
            with contextlib.suppress(Exception):
                owner.client.abort_multipart_upload(Bucket=owner.bucket, Key=owner.key_of(self.sha256),
                                                    UploadId=self._upload_id)
        self.forget()

    def forget(self) -> None:
        """Drop it here only: what is in the bucket is left to whoever owns it now (or to the retention)."""
        owner = self._owner
        self._upload_id = None
        owner._grew(-self.offset)
        self.offset = 0
        self._buffer.clear()
        owner._done(self)

    @property
    def upload_id(self) -> str | None:
        return self._upload_id

    @property
    def sent_parts(self) -> bool:
        """Whether parts went up (so a state object may be in the bucket)."""
        return bool(self._parts)

    @classmethod
    def taken_over(cls, owner: S3Objects, key: str, saved: dict[str, Any]) -> _S3Incoming:
        """The upload another master began, from its saved state (checked by the caller against the bucket)."""
        upload = cls(owner, key, saved["sha256"], saved["size"])
        upload._parts = [{"PartNumber": int(part["PartNumber"]), "ETag": str(part["ETag"]), "Size": int(part["Size"])}
                         for part in saved["parts"]]
        upload.offset = sum(part["Size"] for part in upload._parts)
        upload._hash = ResumableSha256.from_state(saved["state"], upload.offset)
        upload._upload_id = saved["upload_id"]
        return upload


class S3Objects:
    """The object store in a bucket (see the module's doc). Thread-safe."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._lock = threading.Lock()
        self._uploads: dict[str, _S3Incoming] = {}
        """upload key → its upload in progress (open, or closed and kept for a resume)."""
        self.owner = os.urandom(8).hex()
        """Who writes the state objects of the uploads held here (a master's own; `still_ours`)."""
        self._used = sum(int(item["Size"]) for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=self.prefix + "objects/") for item in page.get("Contents", []))

    @classmethod
    def from_url(cls, url: str, endpoint: str | None = None) -> S3Objects:
        """`s3://BUCKET/PREFIX`, at `endpoint` (default: FFRTMP_S3_ENDPOINT, else boto3's settings)."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise InvalidInput("files", f"{url!r} must be s3://BUCKET/PREFIX (or a directory)")
        try:
            import boto3
        except ImportError:
            raise InvalidInput("files", "an s3:// store needs boto3: pip install 'ffrtmp[s3]'") from None
        client = boto3.client("s3", endpoint_url=endpoint or defaults.S3_ENDPOINT or None)
        try:
            client.head_bucket(Bucket=parts.netloc)
        except Exception as exc:  # botocore's errors: no such bucket, no credentials, endpoint unreachable
            raise InvalidInput("files", f"bucket {parts.netloc!r} cannot be used: {exc}") from None
        return cls(client, parts.netloc, parts.path)

    def state_key(self, key: str) -> str:
        return f"{self.prefix}incoming/{key}.json"

    def key_of(self, sha256: str) -> str:
        if not valid_sha256(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return f"{self.prefix}objects/{sha256[:2]}/{sha256}"

    def size_of(self, sha256: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self.key_of(sha256))["ContentLength"])
        except Exception as exc:
            if _missing(exc):
                return None
            raise

    def receive(self, key: str, sha256: str, size: int) -> _S3Incoming:
        if not _KEY.match(key):
            raise ValueError(f"not an upload key: {key!r}")
        self.key_of(sha256)  # validates
        if size < 0:
            raise ValueError("a negative size")
        with self._lock:
            held = self._uploads.pop(key, None)
        if held is not None and (held.sha256, held.size) == (sha256, size):
            held.closed_at = None
            with self._lock:
                self._uploads[key] = held
            return held  # resumed where it stopped
        if held is not None:
            held.abort()  # the key now names other bytes
        upload = self._take_over(key, sha256, size) if held is None else None
        if upload is None:
            upload = _S3Incoming(self, key, sha256, size)
        with self._lock:
            won = self._uploads.setdefault(key, upload)
            if won is upload:
                self._used += upload.offset
        return won  # another thread's, when two took the same upload over at once (its bytes counted once)

    def received(self, key: str) -> int | None:
        """How far the upload got: this master's own, else one another master left with its state."""
        with self._lock:
            upload = self._uploads.get(key)
        if upload is not None:
            return upload.offset
        saved = self._saved(key)
        return sum(int(part["Size"]) for part in saved["parts"]) if saved is not None else None

    def _saved(self, key: str) -> dict[str, Any] | None:
        """The state object another master left for upload `key`, if it is whole and this Python can resume it.
        Anything else a bucket may hold there (a forged or damaged object) reads as none, with a warning."""
        if resumable() is None:
            return None
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.state_key(key))["Body"].read()
        except Exception as exc:
            if not _missing(exc):
                log.warning("upload %s: its resume state cannot be read (%s): it starts again", key, exc)
            return None
        try:
            saved = json.loads(body)
            size, parts = int(saved["size"]), saved["parts"]
            part_size = part_size_for(size)
            if not (valid_sha256(saved["sha256"]) and isinstance(saved["upload_id"], str) and isinstance(parts, list)
                    and int(saved["part_size"]) == part_size and size >= 0):
                raise ValueError("not a state this store writes")
            for number, part in enumerate(parts, start=1):  # whole parts, 1..n, as _send_part numbers them
                if int(part["PartNumber"]) != number or int(part["Size"]) != part_size \
                        or not isinstance(part["ETag"], str):
                    raise ValueError(f"part {number} is not a whole part")
            if len(parts) * part_size > size:
                raise ValueError("more parts than the size")
            ResumableSha256.from_state(str(saved["state"]), len(parts) * part_size)
            return dict(saved)
        except Exception as exc:  # whatever the object holds
            log.warning("upload %s: its resume state in the bucket is not valid (%s): it starts again", key, exc)
            return None

    def _take_over(self, key: str, sha256: str, size: int) -> _S3Incoming | None:
        """The upload of `key` another master left, resumed from its last whole part; None when there is none to
        resume (it is discarded when it names other bytes, or S3 no longer lists its parts as saved)."""
        saved = self._saved(key)
        if saved is None:
            return None
        listed: dict[int, tuple[str, int]] = {}
        try:
            if (saved["sha256"], saved["size"]) != (sha256, size):
                raise ValueError("the key now names other bytes")
            for page in self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=self.key_of(sha256), UploadId=saved["upload_id"]):
                listed.update({int(p["PartNumber"]): (str(p["ETag"]), int(p["Size"])) for p in page.get("Parts", [])})
            if any(listed.get(int(p["PartNumber"])) != (str(p["ETag"]), int(p["Size"])) for p in saved["parts"]):
                raise ValueError("the bucket lists other parts than the state says")
            upload = _S3Incoming.taken_over(self, key, saved)
        except Exception as exc:  # botocore's errors (NoSuchUpload: aborted meanwhile), or the checks above
            log.info("upload %s: the state another master left cannot be resumed (%s): starting again", key, exc)
            self._forget(key, saved)
            return None
        upload.save()  # ours now: the master it came from leaves it alone (still_ours) if it ever aborts its copy
        log.info("upload %s: taken over from another master at %d of %d bytes", key, upload.offset, size)
        return upload

    def still_ours(self, upload: _S3Incoming) -> bool:
        """Whether the bucket's upload behind `upload` is still this store's to abort: no other master has
        written its state since (taking it over). Uploads that sent no part have no state."""
        if not upload.sent_parts or resumable() is None:
            return True
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.state_key(upload.key))["Body"].read()
            return bool(json.loads(body).get("owner") == self.owner)
        except Exception as exc:
            return _missing(exc)  # no state: nobody else took it over; unreadable: leave it to the retention

    def _forget(self, key: str, saved: dict[str, Any] | None = None) -> None:
        """Delete an upload's state object (and, given it, abort the upload it names)."""
        with contextlib.suppress(Exception):
            if saved is not None and valid_sha256(str(saved.get("sha256", ""))):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key_of(saved["sha256"]),
                                                   UploadId=saved["upload_id"])
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=self.state_key(key))

    def open(self, sha256: str) -> _S3Reader:
        try:
            return _S3Reader(self, self.key_of(sha256))
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(sha256) from None
            raise

    def remove(self, sha256: str) -> bool:
        size = self.size_of(sha256)
        if size is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key_of(sha256))
        self._grew(-size)
        return True

    def used_bytes(self) -> int:
        """Stored objects, and the uploads in progress on this master."""
        with self._lock:
            return self._used

    def drop_incoming(self, older_than: float) -> int:
        """Abort the kept uploads untouched for `older_than` s, and the bucket's unfinished uploads as old that no
        upload here owns (a gone master's)."""
        cutoff = time.time() - older_than
        with self._lock:
            stale = [u for u in self._uploads.values() if u.closed_at is not None and u.closed_at <= cutoff]
            owned = {u.upload_id for u in self._uploads.values()} - {None}
        for upload in stale:
            upload.abort()
        dropped = len(stale)
        for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix + "objects/"):
            for left in page.get("Uploads", []):
                if left["UploadId"] not in owned and left["Initiated"].timestamp() <= cutoff:
                    with contextlib.suppress(Exception):
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=left["Key"],
                                                           UploadId=left["UploadId"])
                        dropped += 1
        with self._lock:
            mine = {self.state_key(key) for key in self._uploads}
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + "incoming/"):
            for state in page.get("Contents", []):
                if state["Key"] not in mine and state["LastModified"].timestamp() <= cutoff:
                    with contextlib.suppress(Exception):
                        self.client.delete_object(Bucket=self.bucket, Key=state["Key"])
        return dropped

    def _grew(self, delta: int) -> None:
        with self._lock:
            self._used = max(0, self._used + delta)

    def _keep(self, upload: _S3Incoming) -> None:
        """An interrupted upload stays for a resume; past KEPT, the longest closed goes."""
        upload.closed_at = time.time()
        with self._lock:
            closed = sorted((u for u in self._uploads.values() if u.closed_at is not None),
                            key=lambda u: u.closed_at or 0.0)
        for oldest in closed[:max(0, len(closed) - KEPT)]:
            oldest.abort()

    def _done(self, upload: _S3Incoming) -> None:
        with self._lock:
            if self._uploads.get(upload.key) is upload:
                del self._uploads[upload.key]
        if upload.sent_parts and self.still_ours(upload):
            self._forget(upload.key)
