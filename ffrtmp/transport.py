"""ZeroMQ sockets with CURVE set up the one safe way (see docs/protocol.md, "CURVE").

The master binds one ROUTER; workers and clients connect DEALERs. Order matters and is fixed here:
context → authenticator → socket → security options (incl. `ZAP_ENFORCE_DOMAIN`, so a missing
authenticator fails closed) → bind. Every zmq error becomes a `TransportError`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from ffrtmp import defaults
from ffrtmp.errors import TransportError
from ffrtmp.security import KeyPair

log = logging.getLogger(__name__)

RCVHWM = 200
"""Frames queued per peer on the master before ZeroMQ stops reading its connection (TCP pushes back): a
flooding peer holds at most this many in the master's memory (H4)."""
ZMTP_HEARTBEAT_IVL_MS = 5000
ZMTP_HEARTBEAT_TIMEOUT_MS = 15000

_HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed: the master key is probably wrong",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake failed: the other side speaks another security "
    "mechanism (is CURVE on for both? see --tls/--no-tls)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the master refused this client's key (is its public certificate "
    "in the master's --allow-keys dir?)",
}


def _common_options(sock: zmq.Socket[Any]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)


class AllowedKeys:
    """The ZAP check for `--allow-keys DIR`: the public certificates in DIR, reloaded when DIR changes.

    Runs in the authenticator's thread; a refused key is logged once, not on every reconnect attempt.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys: frozenset[str] = frozenset()
        self.signature: tuple[tuple[str, float], ...] = ()
        self.refused: set[str] = set()
        self.reload()

    def reload(self) -> bool:
        """Re-read DIR if its certificates changed; True when the allowed set changed."""
        try:
            signature = tuple(sorted((p.name, p.stat().st_mtime) for p in self.directory.glob("*.key")))
        except OSError:
            signature = ()
        if signature == self.signature:
            return False
        self.signature = signature
        try:
            keys = frozenset(k.decode() for k in zmq.auth.load_certificates(self.directory))
        except (OSError, ValueError) as exc:
            log.error("cannot read --allow-keys %s: %s; admitting no one", self.directory, exc)
            keys = frozenset()
        changed, self.keys = keys != self.keys, keys
        if changed:
            log.info("--allow-keys %s: %d client keys admitted", self.directory, len(keys))
        return changed

    def callback(self, domain: str, key: bytes) -> bool:
        text = key.decode() if isinstance(key, bytes) else str(key)
        if text in self.keys:
            return True
        if text not in self.refused:
            self.refused.add(text)
            log.warning("refused a connection from an unknown CURVE key %s (not in --allow-keys %s)", text,
                        self.directory)
        return False


class RouterSocket:
    """The master's one socket. `recv_batch` drains what is queued; `send` never blocks."""

    def __init__(self, endpoint: str, keys: KeyPair | None, allow_dir: Path | None = None,
                 max_message: int = defaults.MAX_MESSAGE_BYTES) -> None:
        # Two I/O threads: connections are spread over them, so one peer's stream of frames to decrypt
        # does not queue every other peer's frames behind it (H4).
        self.context = zmq.Context(io_threads=2)
        self.authenticator: ThreadAuthenticator | None = None
        self.allowed = AllowedKeys(allow_dir) if allow_dir is not None and keys is not None else None
        self.curve = keys is not None
        self.handshake_failures = 0
        self._last_failure_log = -1e9
        try:
            if keys is not None:
                self.authenticator = ThreadAuthenticator(self.context, log=logging.getLogger("ffrtmp.zap"))
                self.authenticator.start()
                if self.allowed is not None:
                    self.authenticator.configure_curve_callback(domain=defaults.ZAP_DOMAIN.decode(),
                                                                credentials_provider=self.allowed)
                else:
                    self.authenticator.configure_curve(domain=defaults.ZAP_DOMAIN.decode(),
                                                       location=zmq.auth.CURVE_ALLOW_ANY)
            self.socket = self.context.socket(zmq.ROUTER)
            _common_options(self.socket)
            self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.socket.setsockopt(zmq.MAXMSGSIZE, max_message)
            self.socket.setsockopt(zmq.SNDHWM, 100_000)
            self.socket.setsockopt(zmq.RCVHWM, RCVHWM)
            if keys is not None:
                self.socket.curve_secretkey = keys.secret
                self.socket.curve_publickey = keys.public
                self.socket.curve_server = True
                self.socket.zap_domain = defaults.ZAP_DOMAIN
                self.socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            self.socket.bind(endpoint)
            self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
            self.monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                                          | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        except zmq.ZMQError as exc:
            self.close()
            raise TransportError(f"cannot bind {endpoint}: {exc} (is another master using that port?)") from None

    def poll(self, timeout: float) -> bool:
        return bool(self.socket.poll(int(timeout * 1000), zmq.POLLIN))

    def recv_batch(self, limit: int, admit: Callable[[bytes, str | None, memoryview], bool] | None = None,
                   turn_over: Callable[[], bool] | None = None) -> list[tuple[bytes, bytes, str | None]]:
        """Up to `limit` queued (route, frame, sender's CURVE key) without waiting.

        The key is the ZAP `User-Id` of the connection, the only identity the master trusts; frames of any
        other multipart shape are dropped. `admit(route, key, frame)` False drops a frame before its bytes are
        even copied (`frame` is a view into ZeroMQ's buffer); reading stops early once `turn_over()` (a bounded
        share for peers not yet trusted).
        """
        batch: list[tuple[bytes, bytes, str | None]] = []
        for _ in range(4 * limit):  # dropped frames count too: a turn never reads for ever
            if len(batch) >= limit or (turn_over is not None and turn_over()):
                break
            parts = self._recv_message()
            if parts is None:
                break
            if len(parts) != 2:
                log.debug("dropped a message of %d frames", len(parts))
                continue
            head, body = parts
            sender = None
            if self.curve:
                with contextlib.suppress(zmq.ZMQError):
                    sender = str(body.get("User-Id"))
            route = head.bytes
            if admit is not None and not admit(route, sender, body.buffer):
                continue
            batch.append((route, body.bytes, sender))
        return batch

    def _recv_message(self) -> list[zmq.Frame] | None:
        """The parts of the next queued message, None when there is none.

        Part by part, reading each part's `more` flag: `recv_multipart` asks the socket for RCVMORE after every
        part, which made reading (and dropping) a flooder's frame take twice as long."""
        try:
            parts = [self.socket.recv(zmq.NOBLOCK, copy=False)]
            while parts[-1].more:  # ZeroMQ delivers a message whole: its other parts are queued already
                parts.append(self.socket.recv(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            return None
        return parts

    def watch(self) -> None:
        """Housekeeping between batches: reload --allow-keys, note failed handshakes (logged once a minute)."""
        if self.allowed is not None:
            self.allowed.reload()
        while self.monitor.poll(0):
            try:
                recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.Again, ValueError):
                break
            self.handshake_failures += 1
            now = time.monotonic()
            if now - self._last_failure_log > 60:
                self._last_failure_log = now
                log.warning("a client failed the CURVE handshake (%d so far): it probably has the wrong master "
                            "key, or no CURVE (--no-tls)", self.handshake_failures)

    def send(self, route: bytes, frame: bytes) -> bool:
        """False when the peer is gone (ROUTER_MANDATORY) or its queue is full."""
        try:
            self.socket.send_multipart([route, frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            if exc.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise TransportError(f"send failed: {exc}") from None

    def close(self, linger: float = 0.0) -> None:
        """`linger`: seconds to deliver what is still queued (a goodbye); 0 drops it."""
        monitor = getattr(self, "monitor", None)
        if monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.socket.disable_monitor()
            monitor.close(0)
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close(int(linger * 1000))
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()


class DealerSocket:
    """A worker's or client's connection to the master, with a monitor that reports failed handshakes."""

    def __init__(self, endpoint: str, server_key: bytes | None, keys: KeyPair | None,
                 *, immediate: bool = False, context: zmq.Context[Any] | None = None) -> None:
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        _common_options(self.socket)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 100)
        # Capped at 1 s so a restarted master hears from every worker well within the node timeout.
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.socket.setsockopt(zmq.SNDHWM, 10_000)
        if immediate:
            self.socket.setsockopt(zmq.IMMEDIATE, 1)
        if server_key is not None:
            if keys is None:
                raise TransportError("a CURVE client needs its own key pair")
            self.socket.curve_serverkey = server_key
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECT_RETRIED
        )
        self.handshake_error: str | None = None
        self.connected = False
        self.refused = False
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise TransportError(f"cannot connect to {endpoint!r}: {exc}") from None

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False when it cannot be queued now (no peer with IMMEDIATE, or HWM)."""
        try:
            self.socket.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def poll_events(self) -> None:
        """Read monitor events: remember a failed handshake, a success, a refused connection."""
        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.Again, ValueError):
                return
            code = event["event"]
            if code in _HANDSHAKE_FAILED:
                self.handshake_error = _HANDSHAKE_FAILED[code]
            elif code == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected, self.handshake_error, self.refused = True, None, False
            elif code == zmq.EVENT_CONNECT_RETRIED:
                self.refused = True

    def recv(self, timeout: float) -> bytes | None:
        if self.socket.poll(int(timeout * 1000), zmq.POLLIN):
            frame: bytes = self.socket.recv(zmq.NOBLOCK)
            return frame
        return None

    def recv_nowait(self) -> bytes | None:
        try:
            frame: bytes = self.socket.recv(zmq.NOBLOCK)
            return frame
        except zmq.Again:
            return None

    def explain_silence(self, timeout: float) -> str:
        """Why nothing came back: names the address and what to check."""
        self.poll_events()
        if self.handshake_error:
            return f"{self.endpoint}: {self.handshake_error} (check --master-key / FFRTMP_MASTER_KEY)"
        if self.refused and not self.connected:
            return f"{self.endpoint}: connection refused: is `ffrtmp master` running there (check --master)?"
        return (f"no answer from {self.endpoint} within {timeout:g}s: is `ffrtmp master` running there, and is "
                "the master key right (check --master and --master-key)?")

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)
