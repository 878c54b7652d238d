"""The HTTP API's file endpoints: `PUT`/`HEAD`/`GET /api/files/{sha256}` and `GET /api/jobs/{id}/output`.

Who asks is the loop's business, as for every endpoint (a tiny `upload`/`download` request: key, role, rate,
leadership); what the store allows is the file desk's (filedesk.py), the data channel's rules; the bytes move
here, streamed in chunks through worker threads, so neither the loop nor Tornado's thread waits on a disk or a
bucket. An upload resumes with `Content-Range` from where its partial stopped (`Upload-Offset`); a download
takes one `Range`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import tornado.http1connection
import tornado.iostream
import tornado.web

from ffrtmp.errors import FfrtmpError, InvalidInput, StoreUnavailable
from ffrtmp.files.objects import IncomingObject, ObjectMismatch, ObjectReader, valid_sha256
from ffrtmp.master.auth import Principal
from ffrtmp.master.filedesk import FileDesk, file_name, upload_key
from ffrtmp.master.http_deadlines import ReadDeadlines
from ffrtmp.master.http_gateway import ApiError, Gateway, reply_error
from ffrtmp.master.http_routes import Base
from ffrtmp.master.store import STORE_ERRORS
from ffrtmp.master.store.files import FileRef

CHUNK = 256 * 1024
"""Bytes read and written per step of a download: what one response holds in memory at most."""
NO_STORE = "this master has no file store (it runs with --files-port 0)"
_CONTENT_RANGE = re.compile(r"^bytes (\d{1,16})-(\d{1,16})/(\d{1,16})$")
_RANGE = re.compile(r"^bytes=(\d{0,16})-(\d{0,16})$")
_T = TypeVar("_T")


class ResumeElsewhere(ApiError):
    """409: this upload does not continue the partial; its offset, in `Upload-Offset` and the body, says where."""

    def __init__(self, error: str, field: str, offset: int) -> None:
        super().__init__(409, error, field, {"Upload-Offset": str(offset)})
        self.offset = offset

    def body(self) -> dict[str, Any]:
        return {**super().body(), "offset": self.offset}


def file_error(exc: FfrtmpError) -> ApiError:
    """An error of the file desk as the HTTP answer: the file store's cap stays 507 (Insufficient Storage: the
    operator must make room, retrying will not), the rest as for every endpoint (403 for a role, 429 with
    Retry-After)."""
    if isinstance(exc, StoreUnavailable):
        return ApiError(507, str(exc))
    return reply_error(exc.status, str(exc))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one `Range: bytes=…` span (first, last) to send; None: the whole file (no Range, or one this server
    ignores as RFC 9110 allows: several spans, another unit, a malformed one). Unsatisfiable: 416."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # bytes=-N: the last N bytes
        if int(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, f"the range is past the file's {size} bytes", "Range",
                    headers={"Content-Range": f"bytes */{size}"})


def disposition(name: str, fallback: str) -> str:
    """`attachment` with the name quoted safely: an ASCII `filename` (anything else as `_`) and the exact name
    as RFC 6266's `filename*` (UTF-8, percent-encoded)."""
    name = name.replace("/", "_").replace("\\", "_").strip() or fallback
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"%' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class FilesBase(Base):
    files: Callable[[], FileDesk | None]
    deadlines: ReadDeadlines | None

    def initialize(self, gateway: Gateway, files: Callable[[], FileDesk | None] | None = None,
                   deadlines: ReadDeadlines | None = None) -> None:
        super().initialize(gateway)
        self.files = files or (lambda: None)
        self.deadlines = deadlines

    async def caller(self, op: str) -> Principal:
        """Asked of the loop, which answers it as every request (the key, its role and rate; a standby: 503)."""
        who = await self.ask(op, {})
        return Principal("http", who["role"], who["tenant"])

    def connection(self) -> tornado.http1connection.HTTP1Connection:
        connection = self.request.connection
        assert isinstance(connection, tornado.http1connection.HTTP1Connection)
        return connection

    def desk(self) -> FileDesk:
        desk = self.files()
        if desk is None:
            raise ApiError(404, NO_STORE)
        return desk

    async def off_loop(self, work: Callable[..., _T], *args: Any) -> _T:
        """`work` in a worker thread (store statements, disk or bucket IO), its errors as HTTP answers."""
        try:
            return await asyncio.to_thread(work, *args)
        except FfrtmpError as exc:
            raise file_error(exc) from None
        except STORE_ERRORS as exc:
            raise ApiError(503, f"the master's store cannot be used now ({exc}); retry later",
                           headers={"Retry-After": "5"}) from None
        except OSError as exc:
            raise ApiError(507, f"the file store cannot be used now ({exc.strerror or exc}); retry later") from None

    # ---- downloads -------------------------------------------------------------------------------------

    async def send_file(self, desk: FileDesk, ref: FileRef) -> None:
        """The file, or the one span its Range asks for, in CHUNKs (each flushed before the next is read)."""
        size = ref["size"]
        span = byte_range(self.request.headers.get("Range"), size)
        first, last = span if span is not None else (0, size - 1)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("ETag", f'"{ref["sha256"]}"')
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Disposition", disposition(ref["name"], ref["sha256"]))
        self.set_header("Content-Length", str(last - first + 1))
        if span is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{last}/{size}")
        if self.request.method == "HEAD":
            await self.off_loop(desk.present, ref)
            self.finish()
            return
        reader = await self.off_loop(desk.open, ref)
        try:
            await self.stream(desk, ref, reader, first, last + 1)
        finally:
            await asyncio.to_thread(reader.close)

    async def stream(self, desk: FileDesk, ref: FileRef, reader: ObjectReader, offset: int, end: int) -> None:
        # A whole file is hashed as it goes: bytes that no longer hash to the name are never sent in full (the
        # last chunk is held back), and the bad copy is dropped as the data channel drops it.
        digest = hashlib.sha256() if offset == 0 and end == ref["size"] else None
        problem = None
        while offset < end:
            data = await self.off_loop(reader.read, offset, min(CHUNK, end - offset))
            if not data:
                problem = f"file {ref['sha256']} is shorter in the master's store than recorded"
                break
            offset += len(data)
            if digest is not None:
                digest.update(data)
                if offset >= end and not await self.off_loop(desk.read_whole, ref["sha256"], digest.hexdigest()):
                    problem = f"file {ref['sha256']} was damaged in the master's store and removed: upload it again"
                    break
            self.write(data)
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                return  # the client went away
        if problem is not None:
            if not self._headers_written:
                self.clear()
                self.fail(ApiError(404, problem))
            else:
                self.connection().close()  # cut short: the client's own length check fails it
            return
        self.finish()


@tornado.web.stream_request_body
class Files(FilesBase):
    """`/api/files/{sha256}`: PUT stores (or resumes), HEAD says held or how far a partial got, GET reads."""

    uploading: dict[str, Files]
    """The uploads in progress by partial (filedesk.upload_key): one writer each (used in Tornado's thread only)."""
    incoming: IncomingObject | None = None
    upload = ""
    """The partial's key (filedesk.upload_key) while this request writes it."""
    tenant = ""
    ref: FileRef
    writing = False
    gone = False

    def initialize(self, gateway: Gateway, files: Callable[[], FileDesk | None] | None = None,
                   deadlines: ReadDeadlines | None = None, uploading: dict[str, Files] | None = None) -> None:
        super().initialize(gateway, files, deadlines)
        self.uploading = uploading if uploading is not None else {}

    def named_sha256(self) -> str:
        sha256 = self.path_args[0]
        if not valid_sha256(sha256):
            raise ApiError(400, "sha256: must be 64 lowercase hex digits", "sha256")
        return str(sha256)

    async def head(self, sha256: str) -> None:
        await self.get(sha256)

    async def get(self, sha256: str) -> None:
        try:
            sha256 = self.named_sha256()
            caller = await self.caller("download")
            desk = self.desk()
            try:
                ref = await self.off_loop(desk.by_hash, caller.tenant, sha256)
            except ApiError as exc:
                if exc.status == 404 and (offset := await self.off_loop(desk.received, caller.tenant, sha256)) \
                        is not None:
                    exc.headers["Upload-Offset"] = str(offset)  # where an upload resumes
                raise
            await self.send_file(desk, ref)
        except ApiError as exc:
            if not self._finished:
                self.fail(exc)

    # ---- uploads ---------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        if self.request.method != "PUT":
            return
        try:
            await self.begin()
        except ApiError as exc:
            self.fail(exc)  # answered before the body: Tornado closes the connection rather than read it

    async def begin(self) -> None:
        sha256 = self.named_sha256()
        length = self.request.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "Content-Length: an upload says its length (no chunked bodies)", "Content-Length")
        start, size = self.content_range(int(length))
        caller = await self.caller("upload")
        desk = self.desk()
        try:  # the raw argument: tornado's own getter turns control characters into spaces and strips
            name = file_name(self.request.query_arguments.get("name", [b""])[-1].decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, "name: must be UTF-8", "name") from None
        except InvalidInput as exc:
            raise file_error(exc) from None
        ref: FileRef = {"sha256": sha256, "size": size, "name": name}
        held = await self.off_loop(desk.held, caller.tenant, ref)
        if held is not None:
            self.reply(held)  # nothing needs to be sent: the body is not read
            return
        await self.off_loop(desk.check_room, caller.tenant, size)
        key = upload_key(caller.tenant, sha256)
        if (other := self.uploading.get(key)) is not None:
            raise ResumeElsewhere("this file is being uploaded on another connection; resume when it ends",
                                  "sha256", other.incoming.offset if other.incoming else 0)
        self.uploading[key] = self
        self.upload = key
        try:
            incoming = await self.off_loop(desk.receive, caller.tenant, ref)
            if start == 0 and incoming.offset and "Content-Range" not in self.request.headers:
                await self.off_loop(incoming.abort)  # a whole file from its start: the old partial goes
                incoming = await self.off_loop(desk.receive, caller.tenant, ref)
            if start != incoming.offset:
                await asyncio.to_thread(incoming.close)
                raise ResumeElsewhere(f"Content-Range: this upload resumes at byte {incoming.offset}, not {start}",
                                      "Content-Range", incoming.offset)
        except BaseException:
            self.release()
            raise
        self.incoming, self.tenant, self.ref = incoming, caller.tenant, ref
        if self.gone:  # the client left while this began: keep what came for its resume, hold nothing open
            self.release()
            return
        self.connection().set_max_body_size(int(length))  # this route's cap is the file's own length

    def content_range(self, length: int) -> tuple[int, int]:
        """(start, the file's size): from `Content-Range: bytes START-END/TOTAL`, else 0 and the body's length."""
        header = self.request.headers.get("Content-Range")
        if header is None:
            return 0, length
        match = _CONTENT_RANGE.match(header.strip())
        if match is None:
            raise ApiError(400, "Content-Range: must be bytes START-END/TOTAL", "Content-Range")
        start, end, total = (int(group) for group in match.groups())
        if not start <= end < total or end - start + 1 != length:
            raise ApiError(400, f"Content-Range: bytes {start}-{end}/{total} does not fit a body of {length} "
                           "bytes", "Content-Range")
        return start, total

    async def data_received(self, chunk: bytes) -> None:
        incoming = self.incoming
        if incoming is None or self._finished:
            return
        if self.deadlines is not None:  # a long body that keeps coming is not cut; one that stalls is
            self.deadlines.awaiting_body(self.connection())
        self.writing = True
        try:
            await asyncio.to_thread(incoming.write, incoming.offset, chunk)
        except ObjectMismatch as exc:  # past the size announced (cannot happen with Content-Length enforced)
            await asyncio.to_thread(incoming.abort)
            self.release(closed=True)
            self.fail(ApiError(422, f"{exc}: nothing was stored", "Content-Length"))
        except OSError as exc:
            self.release()
            self.fail(ApiError(507, f"the file store cannot be written now ({exc.strerror or exc}); retry later"))
        finally:
            self.writing = False
            if self.gone:
                self.release()

    async def put(self, sha256: str) -> None:
        incoming = self.incoming
        if self._finished or incoming is None:
            return
        desk = self.desk()
        try:
            if incoming.offset < self.ref["size"]:  # one part of a resumable upload
                self.release()
                self.set_header("Upload-Offset", str(incoming.offset))
                self.reply({**self.ref, "offset": incoming.offset}, 202)
                return
            self.incoming = None  # committed or discarded: nothing to close
            await self.off_loop(desk.store, self.tenant, self.ref, incoming)
            self.reply(self.ref, 201)
        except ApiError as exc:
            self.fail(exc)
        finally:
            self.release(closed=True)

    def on_connection_close(self) -> None:
        self.gone = True
        if not self.writing:  # else the write in flight closes it when done (never an fd closed under it)
            self.release()

    def release(self, *, closed: bool = False) -> None:
        """The partial stays for a resume; the next upload of it may begin."""
        incoming, self.incoming = self.incoming, None
        if incoming is not None and not closed:
            with contextlib.suppress(OSError):
                incoming.close()
        if self.upload and self.uploading.get(self.upload) is self:
            del self.uploading[self.upload]


class JobFile(FilesBase):
    """`/api/jobs/{id}/output`: the job's stored output (`?which=input`: its stored input), as a file download."""

    async def get(self, job_id: str) -> None:
        try:
            which = self.get_query_argument("which", "output") or "output"
            caller = await self.caller("download")
            desk = self.desk()
            ref = await self.off_loop(desk.of_job, caller, job_id, which)
            await self.send_file(desk, ref)
        except ApiError as exc:
            if not self._finished:
                self.fail(exc)

    async def head(self, job_id: str) -> None:
        await self.get(job_id)
