"""A TCP relay that can cut the network between workers and their master, for tests with real processes.

While cut, no byte crosses and every connection stays open, as with a blackholed route: each side's
sends pile up in buffers that will never be delivered. On heal, the connections made before the cut are
reset with whatever they held (that traffic was lost in the partition), and those made during it flow.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    inside: socket.socket
    outside: socket.socket | None = None
    before_cut: bool = False
    dead: threading.Event = field(default_factory=threading.Event)


class Partition:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.cut_now = threading.Event()
        self.closed = threading.Event()
        self.pairs: list[_Pair] = []
        self.lock = threading.RLock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            for pair in self.pairs:
                pair.before_cut = True
            self.cut_now.set()

    def heal(self) -> None:
        with self.lock:
            for pair in [p for p in self.pairs if p.before_cut]:
                self._reset(pair)
            self.cut_now.clear()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            for pair in list(self.pairs):
                self._reset(pair)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                inside, _ = self.listener.accept()
            except OSError:
                return
            pair = _Pair(inside)
            with self.lock:
                self.pairs.append(pair)
            threading.Thread(target=self._relay, args=(pair,), daemon=True).start()

    def _relay(self, pair: _Pair) -> None:
        while self.cut_now.is_set() and not pair.dead.is_set():  # made during the cut: it waits for the heal
            pair.dead.wait(0.05)
        try:
            pair.outside = socket.create_connection(self.upstream)
        except OSError:
            self._reset(pair)
            return
        ends = {pair.inside: pair.outside, pair.outside: pair.inside}
        while not pair.dead.is_set():
            if self.cut_now.is_set():
                pair.dead.wait(0.05)  # nothing is read, so nothing crosses
                continue
            try:
                readable, _, _ = select.select(list(ends), [], [], 0.05)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if self.cut_now.is_set():
                        return  # read as the cut began: lost with the connection at the heal
                    ends[source].sendall(data)
            except (OSError, ValueError):
                self._reset(pair)
                return

    def _reset(self, pair: _Pair) -> None:
        pair.dead.set()
        for sock in (pair.inside, pair.outside):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                with contextlib.suppress(OSError):
                    sock.close()
        with self.lock, contextlib.suppress(ValueError):
            self.pairs.remove(pair)
