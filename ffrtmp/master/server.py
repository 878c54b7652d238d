"""The master process: binds the socket, opens the store, and runs the coordinator's loop."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ffrtmp import __version__, defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.master.coordinator import Coordinator, MasterConfig
from ffrtmp.master.metrics import MasterMetrics, serve
from ffrtmp.master.protection import HOW_TO_OPEN, resolve_bind
from ffrtmp.master.store import WriteFault, open_store, prepare_data_dir
from ffrtmp.master.store.health import describe
from ffrtmp.master.traces import MasterTracer
from ffrtmp.redact import RedactUrls
from ffrtmp.security import master_keypair
from ffrtmp.tracing import Tracing
from ffrtmp.transport import RouterSocket

log = logging.getLogger("ffrtmp.master")
log.addFilter(RedactUrls())  # every master module logs here: stream keys in URLs never reach its log

TICK_EVERY = 0.1
"""Upkeep (dead nodes, due retries) runs at most this often, however busy the socket is."""

BUSY_BATCH = 8
"""A batch at least this big means the master is busy: it then gathers a little more before committing."""
GROUP_COMMIT_WINDOW = 0.002
"""How long a busy master gathers messages for one commit (the most it adds to their latency)."""

GOODBYE_LINGER = 0.5
"""Seconds the socket may take, when the master stops, to deliver what it was just told to send."""

STATE_FILE = "master.json"
"""Written to the data dir: where this master listens, so local tools can find it."""


@dataclass
class MasterOptions:
    bind: str = defaults.BIND_ADDRESS
    port: int = defaults.MASTER_PORT
    data_dir: Path = field(default_factory=defaults.data_dir)
    db: str | Path | None = None
    """An SQLite file, or a postgresql:// URL."""
    tls: bool = True
    cert: Path | None = None
    key: Path | None = None
    allow_keys: Path | None = None
    metrics: bool = True
    metrics_port: int = defaults.METRICS_PORT
    config: MasterConfig = field(default_factory=MasterConfig)
    tracing: Tracing | None = None
    insecure: bool = False
    """Allow a non-loopback bind without any API key or --allow-keys (protected mode off)."""


class MasterServer:
    def __init__(self, options: MasterOptions) -> None:
        self.options = options
        prepare_data_dir(options.data_dir, options.config.store_min_free)
        self.db_path = options.db if options.db is not None else options.data_dir / "master.db"
        # Checked first, then made private (security.private_database), so a foreign file is never touched.
        self.store = open_store(self.db_path, options.config.store_min_free)
        secured = (options.config.api_key is not None or options.allow_keys is not None
                   or self.store.had_api_keys())
        try:
            options.bind, protected = resolve_bind(options.bind, secured=secured, insecure=options.insecure)
        except InvalidInput:
            self.store.close()
            raise
        if protected:
            log.warning("protected mode: no API key and no --allow-keys, so listening on %s only; %s",
                        options.bind, HOW_TO_OPEN)
        keys = master_keypair(options.data_dir, options.cert, options.key) if options.tls else None
        host = "*" if options.bind in ("0.0.0.0", "*") else options.bind
        port = "*" if options.port == 0 else str(options.port)
        self.socket = RouterSocket(f"tcp://{host}:{port}", keys, options.allow_keys)
        options.config.version = __version__
        self.coordinator = Coordinator(self.store, options.config, self.socket.send)
        self.metrics: MasterMetrics | None = None
        self.http = None
        if options.metrics:
            self.metrics = MasterMetrics(self.coordinator, self.store.reader())
            self.http = serve(self.metrics, "0.0.0.0" if options.bind in ("0.0.0.0", "*") else options.bind,
                              options.metrics_port)
        if options.tracing is not None:
            self.coordinator.observer.add(MasterTracer(options.tracing))
        self.stop_event = threading.Event()
        self.goodbye_linger = 0.0
        self.port = int(self.socket.endpoint.rsplit(":", 1)[1])
        self._write_state()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.options.bind in ("0.0.0.0", "*") else self.options.bind
        return f"tcp://{host}:{self.port}"

    def _write_state(self) -> None:
        state = {"url": self.url, "bind": self.options.bind, "pid": os.getpid(), "tls": self.options.tls,
                 "version": __version__,
                 "metrics_port": self.http.server_address[1] if self.http else None}
        path = self.options.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> None:
        coordinator = self.coordinator
        try:
            coordinator.restore(time.time(), time.monotonic())
        except WriteFault as exc:  # the disk filled between the start-up checks and now
            self.close()
            raise InvalidInput("db", f"{describe(self.store.directory, exc.cause, coordinator.config.store_min_free)}"
                               ", then start the master again") from None
        last_tick = -TICK_EVERY  # monotonic: a wall-clock step never pauses upkeep (F2)
        log.info("master %s listening on %s (CURVE %s, store %s)", __version__, self.url,
                 "on" if self.options.tls else "OFF", self.store.path)  # a PostgreSQL URL without its password
        try:
            while not self.stop_event.is_set():
                if self.socket.poll(TICK_EVERY):
                    coordinator.handle_batch(self.collect_batch(), time.time(), time.monotonic())
                mono = time.monotonic()
                if mono - last_tick >= TICK_EVERY:
                    last_tick = mono
                    self.socket.watch()
                    if self.socket.allowed is not None:
                        coordinator.allowed_keys = set(self.socket.allowed.keys)
                    coordinator.tick(time.time(), mono)
                    if self.metrics is not None:
                        self.metrics.last_loop = time.monotonic()
        finally:
            self.say_goodbye()
            self.close()

    def say_goodbye(self) -> None:
        """Tell log followers we are stopping, so they re-subscribe as soon as a master is back."""
        if self.coordinator.logbook.followers:
            try:
                self.coordinator.logbook.restarting()
                self.coordinator.flush()
                self.goodbye_linger = GOODBYE_LINGER
            except Exception:
                log.exception("could not tell the log followers that the master stops")

    def collect_batch(self) -> list[tuple[bytes, bytes, str | None]]:
        """What is queued, and, when that is a lot (we are busy), what arrives in the next moment too.

        One batch is one commit; under load, waiting a millisecond or two for more messages turns many small
        commits into one (group commit), while a lone message at idle is handled at once.
        """
        gate = self.coordinator.inbound
        gate.new_turn()
        batch = self.socket.recv_batch(defaults.MAX_BATCH, self._admit, lambda: gate.turn_over)
        if len(batch) < BUSY_BATCH:
            return batch
        deadline = time.monotonic() + GROUP_COMMIT_WINDOW
        while len(batch) < defaults.MAX_BATCH and not gate.turn_over and (left := deadline - time.monotonic()) > 0:
            if not self.socket.poll(left):
                break
            batch += self.socket.recv_batch(defaults.MAX_BATCH - len(batch), self._admit, lambda: gate.turn_over)
        return batch

    def _admit(self, route: bytes, sender: str | None, nbytes: int) -> bool:
        return self.coordinator.admit(route, sender, nbytes, time.monotonic())

    def close(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.socket.close(linger=self.goodbye_linger)
        if self.metrics is not None:
            self.metrics.collector.reader.close()  # its own connection (a PostgreSQL session)
        self.store.close()
        if self.options.tracing is not None:
            self.options.tracing.shutdown()  # flushes the spans still buffered
        log.info("master stopped")
