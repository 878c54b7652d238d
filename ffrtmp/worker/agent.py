"""The worker's loop: one DEALER to the master (the one of `--master` the core names), the clocks, and a pure
`WorkerCore` fed from them.

Each pass waits on the socket and a wake-up pipe (runner threads and signal handlers write to it) until the
core's next deadline, hands the master's frames to the core, then lets it `tick`. All protocol decisions are
the core's (`core.py`); this module is the part that needs a real socket, a real clock and real threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ffrtmp.protocol import Kind, encode
from ffrtmp.transport import DealerSocket
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core import WorkerCore
from ffrtmp.worker.core_options import WorkerExit, WorkerOptions
from ffrtmp.worker.lease import MasterLease, master_down
from ffrtmp.worker.resources import ResourceSampler
from ffrtmp.worker.runner import Attempt, Event
from ffrtmp.worker.spool import ResultSpool
from ffrtmp.worker.stopping import FORCE_WAIT, end_attempts

__all__ = ["Agent", "WorkerExit", "WorkerOptions"]

log = logging.getLogger("ffrtmp.worker")

SHUTDOWN_WAIT = 10.0
"""At exit after a drain: how long running attempts get to end before their process groups are killed."""


class Agent:
    def __init__(self, options: WorkerOptions, capabilities: Capabilities, *,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.mono = mono
        self.options = options
        self.capabilities = capabilities
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.sock: DealerSocket | None = None
        self.poller = zmq.Poller()
        self.core = WorkerCore(options, capabilities, self, mono=mono())

    # ---- the core's link to the master --------------------------------------------------------------

    def send(self, kind: Kind, body: dict[str, Any]) -> bool:
        return self._send(encode(kind, body))

    def _send(self, frame: bytes) -> bool:
        return self.sock is not None and self.sock.send(frame)

    def reconnect(self) -> None:
        if self.sock is not None:
            self.poller.unregister(self.sock.socket)
            self.sock.close()
        self.sock = DealerSocket(self.core.address, self.options.master_key, self.options.client_keys,
                                 immediate=True)
        self.poller = zmq.Poller()
        self.poller.register(self.sock.socket, zmq.POLLIN)
        self.poller.register(self.wake_read, zmq.POLLIN)

    def handshake_error(self) -> str | None:
        if self.sock is None:
            return None
        self.sock.poll_events()
        return self.sock.handshake_error

    def master_down(self) -> bool:
        return master_down(self.core.address)

    def wake(self) -> None:
        """Make the loop's poll return now (safe from threads and signal handlers)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_write, b"!")

    # ---- the loop -----------------------------------------------------------------------------------

    def connect(self, now: float | None = None) -> None:
        """A fresh connection to the master (the core says HELLO on its next pass)."""
        self.reconnect()
        self.core.connected()

    def run(self) -> int:
        self.core.loop_thread = threading.get_ident()
        self.connect()
        try:
            while True:
                self.tick()
        except WorkerExit as done:
            if str(done):
                log.log(logging.ERROR if done.code else logging.INFO, "%s", done)
            return done.code
        finally:
            self.shutdown()

    def tick(self) -> None:
        assert self.sock is not None
        ready = dict(self.poller.poll(int(self.core.poll_timeout(self.mono()) * 1000)))
        if self.sock.socket in ready:
            self.core.frames_arriving(self.mono())
            while (frame := self.sock.recv_nowait()) is not None:
                self.core.receive(frame, self.wall(), self.mono())
        if self.wake_read in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_read, 65536)
        self.core.tick(self.wall(), self.mono())

    def shutdown(self) -> None:
        """Stop what still runs (a forced stop: SIGKILL after FORCE_WAIT), keep undelivered results on disk."""
        core = self.core
        if core.jobs.held:  # never started: reported (and kept) as lost, so they are retried
            core.jobs.drop_held(list(core.jobs.held), "worker shutting down", self.wall(), self.mono())
        end_attempts(list(core.attempts.values()), FORCE_WAIT if self.stop_now else SHUTDOWN_WAIT, self.mono)
        core.jobs.drain_events(self.wall(), self.mono())
        core.results.keep()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for fd in (self.wake_read, self.wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---- what harnesses, metrics and older tests read: the core's state, on this loop's clocks -----

    @property
    def welcomed(self) -> bool:
        return self.core.welcomed

    @property
    def draining(self) -> bool:
        return self.core.draining

    @property
    def attempts(self) -> dict[str, Attempt]:
        return self.core.jobs.attempts

    @property
    def held(self) -> dict[str, dict[str, Any] | None]:
        return self.core.jobs.held

    @property
    def completed(self) -> int:
        return self.core.completed

    @property
    def failed(self) -> int:
        return self.core.failed

    @property
    def sampler(self) -> ResourceSampler:
        return self.core.sampler

    @property
    def lease(self) -> MasterLease:
        return self.core.lease

    @property
    def node_timeout(self) -> float:
        """The master's node timeout, as its WELCOME announced it (the length of the lease)."""
        return self.core.lease.node_timeout

    @property
    def unacked(self) -> dict[tuple[str, int], tuple[dict[str, Any], float]]:
        return self.core.results.unacked

    @property
    def publishing(self) -> dict[tuple[str, int], tuple[str, str]]:
        return self.core.results.publishing

    @property
    def spool(self) -> ResultSpool:
        return self.core.results.spool

    @property
    def silent_for(self) -> float:
        return self.core.silent_for

    @silent_for.setter
    def silent_for(self, value: float) -> None:
        self.core.silent_for = value

    @property
    def stop_now(self) -> bool:
        return self.core.stop.forced_at is not None

    @stop_now.setter
    def stop_now(self, value: bool) -> None:
        """Stop at once (in-process harnesses): the same as two stop requests."""
        if value:
            self.core.stop_requests += 2

    def request_stop(self) -> None:
        self.core.request_stop()

    def emit(self, event: Event) -> None:
        self.core.emit(event)

    def on_frame(self, frame: bytes, now: float) -> None:
        """A raw frame, at monotonic time `now` (the wall clock is read here)."""
        self.core.receive(frame, self.wall(), now)

    def drain_events(self, now: float | None = None) -> None:
        self.core.jobs.drain_events(self.wall(), self.mono() if now is None else now)

    def send_results(self) -> None:
        self.core.send_results()

    def hello_body(self) -> dict[str, Any]:
        return self.core.hello_body()

    def heartbeat_body(self) -> dict[str, Any]:
        return self.core.heartbeat_body()

    def keep_alive(self, now: float) -> None:
        self.core.keep_alive(self.wall(), now)

    def lease_expired(self, now: float) -> None:
        self.core.lease_expired(self.wall(), now)

    def check_stop(self, now: float) -> None:
        self.core.check_stop(self.wall(), now)

    def start_drain(self, now: float) -> None:
        self.core.start_drain(self.wall(), now)
