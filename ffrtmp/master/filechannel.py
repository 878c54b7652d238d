"""The master's data channel (docs/files.md): a second CURVE ROUTER for file bytes, in a thread of its own.

It has its own store connection and its own socket, so a transfer never queues behind or in front of the
main loop's heartbeats and dispatch. Who may do what is decided here from the store alone: a client by its API
key (auth.Authority, as for a REQUEST), a worker by its CURVE key, which must be the key of the node running
the attempt it names (fenced like a RESULT). Those rules are the file desk's (filedesk.py, shared with the
HTTP API); this module is the wire protocol. Every transfer holds at most `WINDOW` chunks in flight; a
hostile or malformed message ends its transfer with an `error`, never the thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ffrtmp.errors import (
    FfrtmpError,
    FileMismatch,
    InvalidInput,
    MasterUnreachable,
    NotFound,
    ProtocolError,
    RateLimited,
)
from ffrtmp.files import wire
from ffrtmp.files.objects import IncomingObject, ObjectMismatch, ObjectReader, ObjectStore, valid_sha256
from ffrtmp.master.filedesk import UPLOAD_NEEDS, FileDesk, FilesOptions, file_name, upload_key
from ffrtmp.master.store import STORE_ERRORS, Store
from ffrtmp.master.store.files import FileRef
from ffrtmp.security import KeyPair
from ffrtmp.transport import RouterSocket

log = logging.getLogger("ffrtmp.master.files")

IDLE_TIMEOUT = 120.0
"""A transfer that hears nothing this long is dropped (an upload's bytes stay in incoming/ for a resume)."""
MAX_PER_PEER = 32
MAX_TRANSFERS = 256
COLLECT_EVERY = 60.0
__all__ = ["FileChannel", "FilesOptions"]


@dataclass
class Upload:
    route: bytes
    tid: str
    key: str
    tenant: str
    ref: FileRef
    incoming: IncomingObject
    job: tuple[str, int] | None
    seen: float = field(default_factory=time.monotonic)


@dataclass
class Download:
    route: bytes
    tid: str
    reader: ObjectReader
    offset: int
    credit: int
    seen: float = field(default_factory=time.monotonic)
    sha256: str = ""
    digest: Any = None
    """The bytes sent so far, hashed, for a download from the start: a stored file that no longer hashes to its
    name (a disk that rotted it) is found when it is read, and dropped, so its next upload stores it again."""


Transfer = Upload | Download


class FileChannel:
    """Serve the data channel until `stop()`; `port` is the bound port."""

    def __init__(self, endpoint: str, keys: KeyPair | None, allow_dir: Path | None, objects: ObjectStore,
                 open_store: Callable[[], Store], legacy_key: str | None, leading: Callable[[], bool],
                 options: FilesOptions | None = None) -> None:
        self.socket = RouterSocket(endpoint, keys, allow_dir, max_message=wire.CHUNK_SIZE + wire.MAX_HEADER)
        # A peer that ignores its credit holds at most this many frames in the master (before any connection
        # exists, so every connection gets it): 2 windows, ~8 MiB, whatever it sends.
        self.socket.socket.setsockopt(zmq.RCVHWM, 2 * wire.WINDOW)
        self.port = int(self.socket.endpoint.rsplit(":", 1)[1])
        self.objects = objects
        self.leading = leading
        self.desk = FileDesk(objects, open_store, legacy_key, options)
        """The file store's rules and their store connection; the HTTP API serves files through it too."""
        self.transfers: dict[tuple[bytes, str], Transfer] = {}
        self.uploading: dict[str, tuple[bytes, str]] = {}
        """Upload key → the transfer writing it: a resume from a new connection takes the partial over."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ffrtmp-files", daemon=True)
        self._collected = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started (the master failed before its loop)
            self.socket.close()
            return
        self._thread.join(timeout=10)

    # ---- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with self.desk.db():
                pass  # the store opens now: one that cannot be opened ends the channel at once, in the log
            while not self._stop.is_set():
                if self.socket.poll(0.2):
                    for _ in range(256):
                        parts = self._recv()
                        if parts is None:
                            break
                        self._serve(parts)
                self._upkeep()
        except Exception:
            log.exception("the data channel stopped")
        finally:
            for transfer in list(self.transfers.values()):
                self._end(transfer)
            self.socket.close()
            self.desk.close()

    def _recv(self) -> list[zmq.Frame] | None:
        try:
            parts = [self.socket.socket.recv(zmq.NOBLOCK, copy=False)]
            while parts[-1].more:
                parts.append(self.socket.socket.recv(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            return None
        return parts

    def _serve(self, parts: list[zmq.Frame]) -> None:
        if len(parts) not in (2, 3):
            return
        route = parts[0].bytes
        sender = None
        if self.socket.curve:
            with contextlib.suppress(zmq.ZMQError):
                sender = str(parts[1].get("User-Id"))
        try:
            header = wire.decode(parts[1].bytes)
        except ProtocolError as exc:
            log.debug("a malformed header on the data channel: %s", exc)
            return
        tid = header.body["tid"]
        payload = parts[2].buffer if len(parts) == 3 else None
        try:
            if header.kind == wire.PUT:
                self._put(route, sender, header.body)
            elif header.kind == wire.CHUNK:
                self._chunk(route, tid, header.body["offset"], payload)
            elif header.kind == wire.GET:
                self._get(route, sender, header.body)
            elif header.kind == wire.CREDIT:
                self._credit(route, tid, header.body["credit"])
            else:
                raise InvalidInput("k", f"{header.kind!r} is not sent to the master")
        except FfrtmpError as exc:
            self._fail(route, tid, exc.status, str(exc))
        except STORE_ERRORS as exc:
            self._fail(route, tid, 507, f"the master's store cannot be used now ({exc}); retry later")
        except OSError as exc:
            log.warning("the data channel: %s", exc)
            self._fail(route, tid, 507, f"the file store cannot be written now ({exc.strerror or exc}); retry later")
        except Exception:  # a bug met by one message ends that transfer, never the channel
            log.exception("the data channel failed on a %s message", header.kind)
            self._fail(route, tid, 500, "the master failed on this transfer (see its log)")

    def _send(self, route: bytes, kind: str, body: dict[str, Any], payload: bytes | None = None) -> bool:
        frames: list[Any] = [route, wire.encode(kind, body)]
        if payload is not None:
            frames.append(payload)
        try:
            self.socket.socket.send_multipart(frames, zmq.NOBLOCK, copy=payload is None)
            return True
        except zmq.ZMQError:
            return False

    def _fail(self, route: bytes, tid: str, status: int, error: str) -> None:
        transfer = self.transfers.get((route, tid))
        if transfer is not None:
            self._end(transfer)
        self._send(route, wire.ERROR, {"tid": tid, "status": status, "error": error})

    def _end(self, transfer: Transfer, *, discard: bool = False) -> None:
        self.transfers.pop((transfer.route, transfer.tid), None)
        if isinstance(transfer, Upload):
            if self.uploading.get(transfer.key) == (transfer.route, transfer.tid):
                del self.uploading[transfer.key]
            if discard:
                transfer.incoming.abort()
            else:
                transfer.incoming.close()
        else:
            transfer.reader.close()

    def _admit(self, route: bytes, tid: str) -> None:
        if (route, tid) in self.transfers:
            raise InvalidInput("tid", f"{tid!r} is in use on this connection")
        if len(self.transfers) >= MAX_TRANSFERS or sum(1 for r, _ in self.transfers if r == route) >= MAX_PER_PEER:
            raise RateLimited("too many transfers at once; retry when one has ended")
        if not self.leading():
            raise MasterUnreachable("this master is a standby: send files to the leader (see `ffrtmp cluster`)")

    # ---- uploads ---------------------------------------------------------------------------------------

    def _put(self, route: bytes, sender: str | None, body: dict[str, Any]) -> None:
        tid, sha256, size = body["tid"], body["sha256"], body["size"]
        self._admit(route, tid)
        if not valid_sha256(sha256):
            raise InvalidInput("sha256", "must be 64 lowercase hex digits")
        name = file_name(body.get("name"))
        job: tuple[str, int] | None = None
        if "key" in body or "job" not in body:
            tenant = self.desk.client(body.get("key"), UPLOAD_NEEDS).tenant
        else:
            job_id, attempt, tenant = self.desk.attempt_of(sender, body.get("job"), body.get("attempt"))
            job = (job_id, attempt)
        ref: FileRef = {"sha256": sha256, "size": size, "name": name}
        if self.desk.held(tenant, ref, job) is not None:
            self._send(route, wire.PUT_OK, {"tid": tid, "have": True})
            return
        self.desk.check_room(tenant, size)
        key = upload_key(tenant, sha256)
        if (earlier := self.uploading.get(key)) is not None and earlier in self.transfers:
            self._end(self.transfers[earlier])  # a resume from a new connection: the old one is gone
        incoming = self.desk.receive(tenant, ref)
        upload = Upload(route, tid, key, tenant, ref, incoming, job)
        self.transfers[(route, tid)] = upload
        self.uploading[key] = (route, tid)
        self._send(route, wire.PUT_OK, {"tid": tid, "have": False, "offset": incoming.offset,
                                        "credit": wire.WINDOW, "chunk_size": wire.CHUNK_SIZE})
        if incoming.offset == size:
            self._complete(upload)

    def _chunk(self, route: bytes, tid: str, offset: int, payload: memoryview | None) -> None:
        upload = self.transfers.get((route, tid))
        if not isinstance(upload, Upload):
            raise NotFound(f"no upload {tid!r} on this connection (send put first)")
        if payload is None or len(payload) > wire.CHUNK_SIZE:
            raise InvalidInput("chunk", f"a chunk carries 1 to {wire.CHUNK_SIZE} bytes")
        upload.seen = time.monotonic()
        try:
            upload.incoming.write(offset, payload)
        except ValueError as exc:
            raise InvalidInput("offset", str(exc)) from None
        except ObjectMismatch as exc:
            self._end(upload, discard=True)
            raise FileMismatch(str(exc)) from None
        if upload.incoming.offset == upload.ref["size"]:
            self._complete(upload)
        else:
            self._send(route, wire.CREDIT, {"tid": tid, "credit": 1, "offset": upload.incoming.offset})

    def _complete(self, upload: Upload) -> None:
        self.transfers.pop((upload.route, upload.tid), None)
        self.uploading.pop(upload.key, None)
        self.desk.store(upload.tenant, upload.ref, upload.incoming, upload.job)
        ref = upload.ref
        self._send(upload.route, wire.STORED, {"tid": upload.tid, "sha256": ref["sha256"], "size": ref["size"]})

    # ---- downloads -------------------------------------------------------------------------------------

    def _get(self, route: bytes, sender: str | None, body: dict[str, Any]) -> None:
        tid = body["tid"]
        self._admit(route, tid)
        ref = self._readable(sender, body)
        offset = body.get("offset", 0)
        if offset > ref["size"]:
            raise InvalidInput("offset", f"{offset} is past the file's {ref['size']} bytes")
        reader = self.desk.open(ref)
        download = Download(route, tid, reader, offset, max(1, min(wire.WINDOW, body.get("credit", wire.WINDOW))),
                            sha256=ref["sha256"], digest=hashlib.sha256() if offset == 0 else None)
        self.transfers[(route, tid)] = download
        self._send(route, wire.META, {"tid": tid, "sha256": ref["sha256"], "size": ref["size"], "name": ref["name"]})
        self._pump(download)

    def _readable(self, sender: str | None, body: dict[str, Any]) -> FileRef:
        """The file a `get` may read: its tenant's by hash or a job's file for a client, an attempt's input
        for a worker; anything else is 404 (another tenant's file does not exist for the caller)."""
        if "key" in body or "attempt" not in body:
            caller = self.desk.client(body.get("key"), "read")
            if isinstance(body.get("sha256"), str):
                return self.desk.by_hash(caller.tenant, body["sha256"])
            job_id = body.get("job")
            if not isinstance(job_id, str):
                raise InvalidInput("sha256", "a get names a sha256 or a job")
            return self.desk.of_job(caller, job_id, str(body.get("which", "output")))
        job_id, _, _ = self.desk.attempt_of(sender, body.get("job"), body.get("attempt"))
        if body.get("which", "input") != "input":
            raise NotFound(f"job {job_id} has no stored input file")
        return self.desk.attempt_input(job_id)

    def _credit(self, route: bytes, tid: str, credit: int) -> None:
        download = self.transfers.get((route, tid))
        if not isinstance(download, Download):
            return  # a late credit for a transfer that ended: nothing to do
        download.credit = min(wire.WINDOW, download.credit + max(0, credit))
        download.seen = time.monotonic()
        self._pump(download)

    def _pump(self, download: Download) -> None:
        while download.credit > 0 and download.offset < download.reader.size:
            data = download.reader.read(download.offset, wire.CHUNK_SIZE)
            if not data or not self._send(download.route, wire.DATA, {"tid": download.tid,
                                                                       "offset": download.offset}, data):
                self._end(download)
                return
            if download.digest is not None:
                download.digest.update(data)
            download.offset += len(data)
            download.credit -= 1
        if download.offset >= download.reader.size:
            self._end(download)
            if download.digest is not None:
                self.desk.read_whole(download.sha256, download.digest.hexdigest())

    # ---- upkeep: idle transfers, retention --------------------------------------------------------------

    def _upkeep(self) -> None:
        mono = time.monotonic()
        for transfer in [t for t in self.transfers.values() if mono - t.seen > IDLE_TIMEOUT]:
            self._end(transfer)
        if self.socket.allowed is not None:
            self.socket.allowed.reload()
        if mono - self._collected >= COLLECT_EVERY:
            self._collected = mono
            try:
                self.collect(time.time())
            except Exception:
                log.exception("could not collect old files")

    def collect(self, now: float) -> int:
        """Remove files unused for the retention that no job keeps, and partial uploads as old; leader only."""
        return self.desk.collect(now) if self.leading() else 0
