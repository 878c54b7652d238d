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
from ffrtmp.master.protection import HOW_TO_OPEN, resolve_bind

log = logging.getLogger("ffrtmp.master")

SWITCH_INTERVAL = 0.001
"""Seconds a busy thread holds the GIL before the other may take it (Python's default: 0.005)."""


def start_api(bridge: ApiBridge, *, bind: str, port: int, data_dir: Path, cert: Path | None, key: Path | None,
              has_api_key: bool, insecure: bool, files: Callable[[], FileDesk | None] | None = None) -> HttpApi:
    """The running HTTP API. `has_api_key`: the master has a key now or had one; --allow-keys does not count,
    since it admits CURVE keys and an HTTP client has none: with no API key every HTTP caller is an admin."""
    if (cert is None) != (key is None):
        raise InvalidInput("tls-key" if key is None else "tls-cert", "--tls-cert and --tls-key go together")
    try:
        address, protected = resolve_bind(bind, secured=has_api_key, insecure=insecure)
    except InvalidInput as exc:
        raise InvalidInput("api-bind", exc.problem) from None
    if protected:
        log.warning("protected mode: the HTTP API has no API key to check, so it listens on %s only; %s",
                    address, HOW_TO_OPEN)
    made = False
    if cert is None or key is None:
        cert, key, made = self_signed(data_dir)
    context = server_context(cert, key)
    # The HTTP thread and the loop share the GIL: at the default 5 ms switch interval each request could wait
    # that long for the other thread twice; 1 ms keeps a round trip near its real cost.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    api = HttpApi(bridge, address, port, context, files=files)
    api.start()
    log.info("HTTP API on https://%s:%d (certificate %s%s, SHA-256 %s)", address, api.port, cert,
             ", made now" if made else "", fingerprint(cert.read_bytes()))
    return api
