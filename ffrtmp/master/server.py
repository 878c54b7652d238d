"""The master process: binds the socket, opens the store, and runs the coordinator's loop."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import zmq

from ffrtmp import __version__, defaults
from ffrtmp.errors import InvalidInput, TransportError
from ffrtmp.master.api_bridge import ApiBridge
from ffrtmp.master.coordinator import Coordinator, MasterConfig
from ffrtmp.master.leader_metrics import register as register_leader_metrics
from ffrtmp.master.leadership import LeaseTimings
from ffrtmp.master.membership import ClusterMember
from ffrtmp.master.metrics import MasterMetrics, serve
from ffrtmp.master.protection import HOW_TO_OPEN, resolve_bind
from ffrtmp.master.store import WriteFault, open_store, prepare_data_dir
from ffrtmp.master.store.health import describe
from ffrtmp.master.traces import MasterTracer
from ffrtmp.protocol import Kind, encode
from ffrtmp.redact import RedactUrls
from ffrtmp.security import KeyPair, master_keypair
from ffrtmp.tracing import Tracing
from ffrtmp.transport import RouterSocket

if TYPE_CHECKING:
    from ffrtmp.master.filechannel import FileChannel

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
    name: str = field(default_factory=socket.gethostname)
    """This master's name in the cluster (the lease's holder)."""
    advertise: str | None = None
    """The address peers should use for this master; default: from --bind and the port (the host's name on 0.0.0.0)."""
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    api_port: int = 0
    """The HTTPS JSON API's port; 0: off (the command line's default is defaults.API_PORT); -1: any free port
    (written to master.json as api_port)."""
    api_bind: str = defaults.API_BIND
    api_tls: bool = True
    """False: plain HTTP, on a loopback address only (a TLS-terminating proxy in front)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    files_port: int = 0
    """The data channel's port (docs/files.md); 0: off (the command line's default is defaults.FILES_PORT); -1:
    any free port (written to master.json as files_port)."""
    files_port_given: bool = True
    """False when --files-port is the default: a port in use then leaves the data channel off (a warning)
    instead of stopping the master, as a second master on one machine would."""
    files_dir: str | Path | None = None
    """`--files`: a directory, or `s3://BUCKET/PREFIX`."""
    """The object store's directory; default DATA_DIR/files."""
    files_retention: float = 7 * 86400.0
    files_max_bytes: int | None = None


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
        self.keys, self.bind_host = keys, host
        port = "*" if options.port == 0 else str(options.port)
        self.socket = RouterSocket(f"tcp://{host}:{port}", keys, options.allow_keys)
        options.config.version = __version__
        try:
            self.files = self._file_channel(keys, host) if options.files_port else None
        except InvalidInput:
            self.socket.close()
            self.store.close()
            raise
        options.config.files_port = self.files.port if self.files is not None else 0
        self.coordinator = Coordinator(self.store, options.config, self.send_frame)
        self.api_bridge = ApiBridge() if options.api_port else None
        self.api = None
        self._poller: zmq.Poller | None = None
        if self.api_bridge is not None:
            from ffrtmp.master.http_start import start_api

            try:
                self.api = start_api(self.api_bridge, bind=options.api_bind, port=max(options.api_port, 0),
                                     data_dir=options.data_dir, cert=options.tls_cert, key=options.tls_key,
                                     tls=options.api_tls,
                                     has_api_key=options.config.api_key is not None or self.store.had_api_keys(),
                                     insecure=options.insecure,
                                     files=lambda: self.files.desk if self.files is not None else None)
            except InvalidInput:
                self.socket.close()
                self.store.close()
                raise
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
        self.member = ClusterMember(self, options.name, self.advertise, options.lease,
                                    lambda: open_store(self.db_path, options.config.store_min_free),
                                    on_lead=self._bind_files_late)
        if self.metrics is not None:
            register_leader_metrics(self.metrics.registry, self.member.election)
        self._write_state()

    def _file_channel(self, keys: KeyPair | None, host: str) -> FileChannel | None:
        """The data channel: its own ROUTER (same keys, same --allow-keys) and store connection, off the loop."""
        from ffrtmp.files.backends import open_object_store
        from ffrtmp.master.filechannel import FileChannel, FilesOptions

        options = self.options
        port = "*" if options.files_port < 0 else str(options.files_port)
        try:
            objects = open_object_store(options.files_dir or options.data_dir / "files")
            channel = FileChannel(f"tcp://{host}:{port}", keys, options.allow_keys, objects,
                                  lambda: open_store(self.db_path, options.config.store_min_free),
                                  options.config.api_key, lambda: self.member.leading,
                                  FilesOptions(options.files_retention, options.files_max_bytes))
        except TransportError as exc:
            if not options.files_port_given:
                log.warning("no data channel for files: %s (set --files-port to another port)", exc)
                return None
            raise InvalidInput("files-port", f"{exc} (--files-port 0 turns the data channel off)") from None
        except OSError as exc:
            raise InvalidInput("files", f"cannot use the file store: {exc}") from None
        return channel

    def _bind_files_late(self) -> None:
        """A standby that found the default data port taken (another master on this machine, the leader then)
        tries it again when it leads: the old leader is gone and only a leader's data channel moves files."""
        if self.files is not None or not self.options.files_port or self.options.files_port_given:
            return
        try:
            self.files = self._file_channel(self.keys, self.bind_host)
        except InvalidInput as exc:  # not a port in use: the file store itself failed
            log.warning("no data channel for files: %s", exc)
            return
        if self.files is not None:
            self.options.config.files_port = self.files.port
            self.files.start()
            log.info("data channel for files on port %d", self.files.port)
            self._write_state()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.options.bind in ("0.0.0.0", "*") else self.options.bind
        return f"tcp://{host}:{self.port}"

    @property
    def advertise(self) -> str:
        if self.options.advertise:
            return self.options.advertise
        return f"tcp://{socket.getfqdn()}:{self.port}" if self.options.bind in ("0.0.0.0", "*") else self.url

    def _write_state(self) -> None:
        state = {"url": self.url, "bind": self.options.bind, "pid": os.getpid(), "tls": self.options.tls,
                 "version": __version__, "name": self.options.name, "advertise": self.advertise,
                 "metrics_port": self.http.server_address[1] if self.http else None,
                 "api_port": self.api.port if self.api else None,
                 "files_port": self.files.port if self.files else None}
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
            self.member.start(time.time(), time.monotonic())  # leads at once when the lease is free
        except WriteFault as exc:  # the disk filled between the start-up checks and now
            self.close()
            raise InvalidInput("db", f"{describe(self.store.directory, exc.cause, coordinator.config.store_min_free)}"
                               ", then start the master again") from None
        # What start-up made (imports, the restored state) lives as long as the master: frozen, the collector's
        # full passes skip it. Unfrozen, a full pass took 50-130 ms, and a flood of frames from strangers, each
        # decoded only to be refused, set one off several times a second (H4).
        if self.files is not None:
            self.files.start()
        gc.collect()
        gc.freeze()
        last_tick = -TICK_EVERY  # monotonic: a wall-clock step never pauses upkeep (F2)
        log.info("master %s listening on %s (CURVE %s, store %s)", __version__, self.url,
                 "on" if self.options.tls else "OFF", self.store.path)  # a PostgreSQL URL without its password
        try:
            while not self.stop_event.is_set():
                if self._poll(TICK_EVERY):
                    self.member.handle_batch(self.collect_batch() + self._api_batch(), time.time(),
                                             time.monotonic())
                    if self.coordinator.inbound.pause:
                        self.stop_event.wait(self.coordinator.inbound.pause)
                mono = time.monotonic()
                if mono - last_tick >= TICK_EVERY:
                    last_tick = mono
                    self.socket.watch()
                    if self.socket.allowed is not None:
                        self.coordinator.allowed_keys = set(self.socket.allowed.keys)
                    self.member.tick(time.time(), mono)
                    if self.metrics is not None:
                        self.metrics.last_loop = time.monotonic()
        finally:
            gc.unfreeze()  # for a master run in a thread of a longer-lived process (tests)
            self.say_goodbye()
            self.member.stop()  # hands the lease over: a standby leads within one poll
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

    def _admit(self, route: bytes, sender: str | None, frame: memoryview) -> bool:
        coordinator = self.coordinator
        if coordinator.state.registry.joined(route):
            return True  # joined workers are never charged (coordinator.admit)
        return coordinator.inbound.admit_frame(sender or route.hex(), frame, time.monotonic())

    # ---- the HTTP API's requests: frames like the socket's, through the same admission ---------------

    def _poll(self, timeout: float) -> bool:
        if self.api_bridge is None:
            return self.socket.poll(timeout)
        if self._poller is None:
            self._poller = zmq.Poller()
            self._poller.register(self.socket.socket, zmq.POLLIN)
            self._poller.register(self.api_bridge.fileno(), zmq.POLLIN)
        ready = bool(self._poller.poll(int(timeout * 1000)))
        self.api_bridge.last_turn = time.monotonic()
        return ready

    def _api_batch(self) -> list[tuple[bytes, bytes, str | None]]:
        if self.api_bridge is None:
            return []
        batch: list[tuple[bytes, bytes, str | None]] = []
        for route, frame, sender in self.api_bridge.take(defaults.MAX_BATCH):
            if self._admit(route, sender, memoryview(frame)):
                batch.append((route, frame, sender))
            else:
                self.api_bridge.deliver(route, encode(Kind.REPLY, {"rid": "h", "status": 429, "error": (
                    "rate limited: too many requests before authentication from this address; retry after 1s")}))
        return batch

    def send_frame(self, route: bytes, frame: bytes) -> bool:
        """To a ZeroMQ peer, or to the HTTP API bridge when `route` is one of its requests."""
        if self.api_bridge is not None and self.api_bridge.owns(route):
            return self.api_bridge.deliver(route, frame)
        return self.socket.send(route, frame)

    def close(self) -> None:
        if self.files is not None:
            self.files.stop()
        if self.api is not None:
            self.api.stop()
        if self.api_bridge is not None:
            self.api_bridge.shutdown()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.socket.close(linger=self.goodbye_linger)
        self.member.close()
        if self.metrics is not None:
            self.metrics.collector.reader.close()  # its own connection (a PostgreSQL session)
        self.store.close()
        if self.options.tracing is not None:
            self.options.tracing.shutdown()  # flushes the spans still buffered
        log.info("master stopped")
