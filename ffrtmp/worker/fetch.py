"""A worker's side of the data channel: where it is, and fetching a job's stored input into the cache.

The master names its data port in WELCOME (`files_port`); the worker reaches it on its current master's host
with the same CURVE keys (a failover's WELCOME names the new one). A job with `input_file` is fetched as that
attempt's input (`get` with job + attempt: the master lets a worker read only the inputs of attempts it was
given) into `WORK_DIR/cache`, checked there, and read by FFmpeg from the cache (`filecache.py`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ffrtmp.errors import FfrtmpError, FileMismatch, NotFound
from ffrtmp.files.transfer import FilesPeer, PeerMoved, download
from ffrtmp.security import KeyPair
from ffrtmp.worker.filecache import FileCache, Wanted

TRANSFER_TIMEOUT = 30.0
"""A transfer that hears nothing from the master this long is tried again (resuming)."""
MOVES = 3
"""How many times one transfer follows its master to a new one (failovers) before it gives up."""
T = TypeVar("T")


class NoDataChannel(FfrtmpError):
    """The master offers no data channel (an older master, or `--files-port 0`)."""


class InputMissing(FfrtmpError):
    """The master has no such stored input for this attempt (the tenant's file is gone, or was never there)."""


@dataclass
class DataChannel:
    """Where the current master's data channel is; set at every WELCOME, read by runner threads."""

    server_key: bytes | None = None
    keys: KeyPair | None = None
    timeout: float = TRANSFER_TIMEOUT

    def __post_init__(self) -> None:
        self._peer: FilesPeer | None = None
        self._lock = threading.Lock()

    def welcomed(self, master: str, body: dict[str, Any]) -> None:
        """A WELCOME from `master`: its `files_port` (absent or 0: it has no data channel)."""
        port = body.get("files_port")
        peer = None
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            peer = FilesPeer.beside(master, port, self.server_key, self.keys)
        with self._lock:
            self._peer = peer

    @property
    def peer(self) -> FilesPeer | None:
        with self._lock:
            return self._peer

    def need(self) -> FilesPeer:
        peer = self.peer
        if peer is None:
            raise NoDataChannel("the master offers no data channel (files_port) to move this job's files over")
        return peer

    def _moved_from(self, peer: FilesPeer) -> bool:
        return self.peer != peer

    def following(self, transfer: Callable[[FilesPeer, Callable[[], bool]], T]) -> T:
        """Run `transfer(peer, moved)` on the current master's channel; when the master fails over while it
        waits (a new WELCOME names another channel), it starts again there instead of waiting out its
        timeout on a dead one. Resuming is the transfer's own (the master keeps what it received)."""
        for _ in range(MOVES):
            peer = self.need()
            try:
                return transfer(peer, functools.partial(self._moved_from, peer))
            except PeerMoved:
                continue
        peer = self.need()
        return transfer(peer, lambda: False)


class InputFetcher:
    """Fetches attempts' stored inputs into the cache, once per file however many attempts need it."""

    def __init__(self, channel: DataChannel, cache: FileCache) -> None:
        self.channel = channel
        self.cache = cache

    @contextlib.contextmanager
    def input(self, job: str, attempt: int, input_file: dict[str, Any]) -> Iterator[Path]:
        """The verified input in the cache, pinned while the block runs; raises NoDataChannel, InputMissing,
        FileMismatch (after the cache's tries) or CacheFull."""
        wanted = Wanted(str(input_file["sha256"]), int(input_file["size"]))

        def fetch(partial: Path) -> str | None:
            try:  # the channel is asked on every try: a failover may have moved it
                done = self.channel.following(
                    lambda peer, moved: download(peer, partial, job=job, which="input", attempt=attempt,
                                                 timeout=self.channel.timeout, moved=moved))
            except NotFound as exc:
                raise InputMissing(f"the master has no stored input for this attempt: {exc}") from None
            if done.sha256 != wanted.sha256:  # the master's file is not the one the job names
                raise FileMismatch(f"the master sent {done.sha256}, not the input {wanted.sha256} the job names")
            return done.sha256

        with self.cache.use(wanted, fetch) as path:
            yield path
