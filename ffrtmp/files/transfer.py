"""The peer side of the data channel, for clients and workers: `upload` and `download` a file.

One DEALER to the master's `--files-port`, credit-based flow control (at most `WINDOW` chunks of `CHUNK_SIZE`
in flight, so memory is bounded whatever the file's size), resume (an upload continues from what the master
holds, a download from the reader's own partial file), a progress callback, and SHA-256 checked at both ends.
A try that hears nothing for `timeout` seconds (a dropped link, a restarted master) is retried with a new
transfer id, resuming; after `retries` the error names the address and what to check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq

from ffrtmp.errors import FileMismatch, InvalidInput, MasterUnreachable, error_from_status
from ffrtmp.files import wire
from ffrtmp.files.objects import valid_sha256
from ffrtmp.files.partial import HASH_BLOCK, HashedPartial
from ffrtmp.security import KeyPair
from ffrtmp.transport import DealerSocket

Progress = Callable[[int, int], None]
"""Told (bytes done, total bytes) as a transfer goes: a resumed transfer starts at what was there already."""


@dataclass(frozen=True)
class FilesPeer:
    """How to reach a master's data channel: its endpoint and the CURVE keys of the main channel."""

    endpoint: str
    server_key: bytes | None = None
    keys: KeyPair | None = None

    @classmethod
    def beside(cls, master: str, port: int, server_key: bytes | None = None,
               keys: KeyPair | None = None) -> FilesPeer:
        """The data channel on `port` of the host of `master` (`tcp://HOST:PORT`, the main channel's URL)."""
        parts = urlsplit(master)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return cls(f"tcp://{host}:{port}", server_key, keys)


@dataclass(frozen=True)
class Uploaded:
    sha256: str
    size: int
    name: str
    sent: int
    """Payload bytes sent by this call (0 when the master had the file already, at most one chunk re-sent)."""
    had: bool
    """True when the master already held the file for this tenant and nothing was sent."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    name: str | None
    received: int
    """Payload bytes received by this call (a resumed download receives only the rest)."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _Silence(Exception):
    """Nothing came within the timeout: this try is over, the next one resumes."""


class PeerMoved(MasterUnreachable):
    """The caller's master changed while the transfer waited (a failover): try it again with the new one."""


MOVE_CHECK_EVERY = 0.25
"""While a transfer hears nothing, how often it asks whether its master moved (`moved`)."""


class _Channel:
    """One DEALER and the messages of the current transfer id (anything else, a former try's, is dropped)."""

    def __init__(self, peer: FilesPeer, moved: Callable[[], bool] | None = None) -> None:
        self.dealer = DealerSocket(peer.endpoint, peer.server_key, peer.keys)
        self.socket = self.dealer.socket
        self.tid = ""
        self.moved = moved

    def new_tid(self) -> str:
        self.tid = secrets.token_hex(8)
        return self.tid

    def send(self, kind: str, body: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
        header = wire.encode(kind, {"tid": self.tid, **body})
        if payload is None:
            self.socket.send(header)
        else:
            self.socket.send_multipart([header, payload], copy=False)

    def recv(self, timeout: float) -> tuple[wire.Header, memoryview | None]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Silence()
            wait = left if self.moved is None else min(left, MOVE_CHECK_EVERY)
            if not self.socket.poll(int(wait * 1000) + 1, zmq.POLLIN):
                if self.moved is not None and self.moved():  # asked only in a silence: never in a busy stream
                    raise PeerMoved("the master changed during the transfer")
                continue
            parts = self.socket.recv_multipart(copy=False)
            try:
                header = wire.decode(parts[0].bytes)
            except Exception:  # a header this side cannot read: not ours to act on
                continue
            if header.body["tid"] != self.tid:
                continue
            if header.kind == wire.ERROR:
                raise error_from_status(header.body["status"], header.body["error"])
            payload = parts[1].buffer if len(parts) > 1 else None  # no copy: written straight from ZeroMQ's buffer
            return header, payload

    def close(self) -> None:
        self.dealer.close()


def _who(api_key: str | None, job: str | None, attempt: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if api_key:
        body["key"] = api_key
    if job is not None:
        body["job"] = job
    if attempt is not None:
        body["attempt"] = attempt
    return body


def upload(peer: FilesPeer, path: Path, *, name: str | None = None, sha256: str | None = None,
           api_key: str | None = None, job: str | None = None, attempt: int | None = None,
           progress: Progress | None = None, timeout: float = 30.0, retries: int = 3,
           moved: Callable[[], bool] | None = None) -> Uploaded:
    """Store the file at `path` on the master; returns what was stored and how many bytes were sent.

    Clients pass `api_key` (the file belongs to its tenant); workers pass `job` and `attempt` (the attempt's
    output). `sha256`, when known, saves hashing the file here. Errors are those of `ffrtmp.errors` by status
    (404, 409 stale attempt, 422 mismatch, 429 quota, 507 store full, …). `moved`, asked while the master is
    silent, ends the transfer with PeerMoved once it is true (a worker's master failed over).
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInput("input", f"cannot read {path}: {exc.strerror or exc}") from None
    digest = sha256 if sha256 is not None else file_sha256(path)
    if not valid_sha256(digest):
        raise InvalidInput("sha256", f"{digest!r} is not 64 lowercase hex digits")
    shown = name if name is not None else path.name
    channel = _Channel(peer, moved)
    sent = 0
    try:
        with path.open("rb") as handle:
            for _ in range(retries + 1):
                channel.new_tid()
                channel.send(wire.PUT, {"sha256": digest, "size": size, "name": shown,
                                        **_who(api_key, job, attempt)})
                try:
                    result, sent = _put(channel, handle, digest, size, timeout, progress, sent)
                except _Silence:
                    continue
                return Uploaded(digest, size, shown, sent, result)
        raise MasterUnreachable(channel.dealer.explain_silence(timeout))
    finally:
        channel.close()


def _put(channel: _Channel, handle: Any, digest: str, size: int, timeout: float, progress: Progress | None,
         sent: int) -> tuple[bool, int]:
    """One try of an upload; (the master had it already, bytes sent so far in all tries)."""
    header, _ = channel.recv(timeout)
    if header.kind != wire.PUT_OK:
        raise MasterUnreachable(f"the data channel answered {header.kind!r} to a put")
    if header.body["have"]:
        if progress is not None:
            progress(size, size)
        return True, sent
    offset = min(max(0, int(header.body.get("offset", 0))), size)
    credit = max(1, min(wire.WINDOW, int(header.body.get("credit", wire.WINDOW))))
    chunk = max(1024, min(wire.CHUNK_SIZE, int(header.body.get("chunk_size", wire.CHUNK_SIZE))))
    if progress is not None:
        progress(offset, size)
    while True:
        while credit > 0 and offset < size:
            data = os.pread(handle.fileno(), min(chunk, size - offset), offset)
            if not data:
                raise FileMismatch(f"the file became shorter while being sent ({offset} of {size} bytes)")
            channel.send(wire.CHUNK, {"offset": offset}, data)
            offset += len(data)
            sent += len(data)
            credit -= 1
        header, _ = channel.recv(timeout)
        if header.kind == wire.CREDIT:
            credit += max(0, min(wire.WINDOW, header.body["credit"]))
            if progress is not None and "offset" in header.body:
                progress(min(header.body["offset"], size), size)
        elif header.kind == wire.STORED:
            if header.body["sha256"] != digest or header.body["size"] != size:
                raise FileMismatch("the master stored another file than the one sent")
            if progress is not None:
                progress(size, size)
            return False, sent


def download(peer: FilesPeer, dest: Path, *, sha256: str | None = None, job: str | None = None,
             which: str = "output", attempt: int | None = None, api_key: str | None = None,
             progress: Progress | None = None, timeout: float = 30.0, retries: int = 3,
             moved: Callable[[], bool] | None = None) -> Downloaded:
    """Fetch a stored file into `dest`, by `sha256` or as a job's `which` (`input`/`output`) file.

    The bytes go to `DEST.part` first and become `dest` only once their SHA-256 matched (fsync, rename); a
    rerun after an interruption resumes from that partial file's length. A partial that turns out not to be
    the same file is discarded and the download retried once from its start. `moved` as for `upload`.
    """
    if sha256 is None and job is None:
        raise InvalidInput("sha256", "a download needs a SHA-256 or a job")
    if sha256 is not None and not valid_sha256(sha256):
        raise InvalidInput("sha256", f"{sha256!r} is not 64 lowercase hex digits")
    if which not in ("input", "output"):
        raise InvalidInput("which", f"{which!r} is neither input nor output")
    part = dest.with_name(dest.name + ".part")
    what: dict[str, Any] = {"sha256": sha256} if sha256 is not None else {"job": job, "which": which}
    what.update(_who(api_key, None if sha256 is None else job, attempt))
    channel = _Channel(peer, moved)
    received = 0
    fresh_retry = True
    try:
        for _ in range(retries + 1):
            channel.new_tid()
            try:
                return _get(channel, dest, part, what, timeout, progress, received)
            except _Silence:
                received = _part_size(part)
                continue
            except FileMismatch:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                if not fresh_retry:
                    raise
                fresh_retry = False
        raise MasterUnreachable(channel.dealer.explain_silence(timeout))
    finally:
        channel.close()


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _get(channel: _Channel, dest: Path, part: Path, what: dict[str, Any], timeout: float,
         progress: Progress | None, received: int) -> Downloaded:
    file = HashedPartial(part)
    try:
        file.rehash()
        channel.send(wire.GET, {**what, "offset": file.offset, "credit": wire.WINDOW})
        header, _ = channel.recv(timeout)
        if header.kind != wire.META:
            raise MasterUnreachable(f"the data channel answered {header.kind!r} to a get")
        size, expected, name = header.body["size"], header.body["sha256"], header.body.get("name")
        if file.offset > size or ("sha256" in what and what["sha256"] != expected):
            raise FileMismatch(f"the partial {part} is not of this file")
        if progress is not None:
            progress(file.offset, size)
        while file.offset < size:
            header, payload = channel.recv(timeout)
            if header.kind != wire.DATA or payload is None:
                continue
            if header.body["offset"] != file.offset or file.offset + len(payload) > size:
                raise FileMismatch(f"bytes at {header.body['offset']} came, {file.offset} expected")
            file.append(payload)
            received += len(payload)
            channel.send(wire.CREDIT, {"credit": 1, "offset": file.offset})
            if progress is not None:
                progress(file.offset, size)
        if file.hexdigest() != expected:
            raise FileMismatch(f"the bytes received hash to {file.hexdigest()}, not {expected}")
        file.sync()
    finally:
        file.close()
    os.replace(part, dest)
    return Downloaded(dest, expected, size, name, received)
