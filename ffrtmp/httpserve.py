"""A tiny HTTP endpoint for Prometheus and health checks, shared by the master and the worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("ffrtmp.metrics")

TEXT = "text/plain; charset=utf-8"


def as_number(value: Any) -> float | None:
    """A heartbeat's figure as a float, or None: workers' resources are input, not trusted."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def serve_http(registry: CollectorRegistry, host: str, port: int,
               checks: dict[str, Callable[[], bool | str]]) -> ThreadingHTTPServer:
    """Serve /metrics from `registry` and each check path as 200 ok / 503 (with the reason when the check
    gives one instead of False), in a daemon thread (no auth)."""

    def answer(path: str) -> tuple[int, bytes, str]:
        if path == "/metrics":
            return 200, generate_latest(registry), CONTENT_TYPE_LATEST
        if path in checks:
            ok = checks[path]()
            if isinstance(ok, str):
                return 503, ok.encode() + b"\n", TEXT
            return (200, b"ok\n", TEXT) if ok else (503, b"unavailable\n", TEXT)
        return 404, b"not found\n", TEXT

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                code, body, content_type = answer(path)
            except Exception:  # a bug in a collector answers 500, never a dropped connection
                log.exception("GET %s failed", path)
                code, body, content_type = 500, b"internal error\n", TEXT
            self._reply(code, body, content_type)

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
