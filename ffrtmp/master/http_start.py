"""Starting the HTTP API with the master: its bind (protected mode, as for ZeroMQ), its TLS pair, its thread."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ffrtmp.errors import InvalidInput
from ffrtmp.master.api_bridge import ApiBridge
from ffrtmp.master.filedesk import FileDesk
from ffrtmp.master.http_api import HttpApi
from ffrtmp.master.http_tls import fingerprint, self_signed, server_context
from ffrtmp.master.protection import AUTO, HOW_TO_OPEN, LOOPBACK, is_loopback, resolve_bind

log = logging.getLogger("ffrtmp.master")

SWITCH_INTERVAL = 0.001
"""Seconds a busy thread holds the GIL before the other may take it (Python's default: 0.005)."""


def start_api(bridge: ApiBridge, *, bind: str, port: int, data_dir: Path, cert: Path | None, key: Path | None,
              has_api_key: bool, insecure: bool, files: Callable[[], FileDesk | None] | None = None,
              tls: bool = True) -> HttpApi:
    """The running HTTP API. `has_api_key`: the master has a key now or had one; --allow-keys does not count,
    since it admits CURVE keys and an HTTP client has none: with no API key every HTTP caller is an admin.
    `tls` False: plain HTTP, on a loopback address only (the proxy in front terminates TLS)."""
    if (cert is None) != (key is None):
        raise InvalidInput("tls-key" if key is None else "tls-cert", "--tls-cert and --tls-key go together")
    if not tls:
        bind = plain_bind(bind)
    try:
        address, protected = resolve_bind(bind, secured=has_api_key, insecure=insecure)
    except InvalidInput as exc:
        raise InvalidInput("api-bind", exc.problem) from None
    if protected:
        log.warning("protected mode: the HTTP API has no API key to check, so it listens on %s only; %s",
                    address, HOW_TO_OPEN)
    # The HTTP thread and the loop share the GIL: at the default 5 ms switch interval each request could wait
    # that long for the other thread twice; 1 ms keeps a round trip near its real cost.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    if not tls:
        api = HttpApi(bridge, address, port, None, files=files)
        api.start()
        log.info("HTTP API on http://%s:%d: plain HTTP (--no-api-tls), for the TLS-terminating proxy in front",
                 address, api.port)
        return api
    made = False
    if cert is None or key is None:
        cert, key, made = self_signed(data_dir)
    api = HttpApi(bridge, address, port, server_context(cert, key), files=files)
    api.start()
    log.info("HTTP API on https://%s:%d (certificate %s%s, SHA-256 %s)", address, api.port, cert,
             ", made now" if made else "", fingerprint(cert.read_bytes()))
    return api


def plain_bind(bind: str) -> str:
    """Where plain HTTP may listen: a loopback address (`auto` is 127.0.0.1), never an interface others reach,
    since the bearer keys would cross the network in clear."""
    if bind in (AUTO, ""):
        return LOOPBACK
    if not is_loopback(bind):
        raise InvalidInput("api-tls", f"plain HTTP (--no-api-tls) listens on a loopback address only, not {bind}: "
                           "bearer keys would cross the network in clear. Put the TLS-terminating proxy on this "
                           "machine and give --api-bind 127.0.0.1, or keep HTTPS")
    return bind
