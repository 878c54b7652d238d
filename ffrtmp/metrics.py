"""Prometheus metrics of the master (SPEC §5), on their own registry, plus /health and /ready.

Job counts are read at scrape time through a separate read-only connection (WAL readers never block the
coordinator); node figures come from the coordinator's memory; durations are observed as jobs end.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ffrtmp.master.observer import Observer

if TYPE_CHECKING:
    from ffrtmp.master.coordinator import Coordinator

log = logging.getLogger("ffrtmp.metrics")

DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class MasterCollector(Collector):
    def __init__(self, coordinator: Coordinator, db_path: str) -> None:
        self.coordinator = coordinator
        self.db_path = db_path
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None

    def _counts(self) -> dict[str, int]:
        with self.lock:
            if self.conn is None:
                self.conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
            rows = self.conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        return {status: n for status, n in rows}

    def healthy(self) -> bool:
        try:
            self._counts()
            return True
        except sqlite3.Error:
            return False

    def collect(self) -> Iterator[Any]:
        counts = self._counts()
        for status in ("pending", "running", "completed", "failed", "canceled"):
            value = counts.get(status, 0) + (counts.get("assigned", 0) if status == "running" else 0)
            yield GaugeMetricFamily(f"ffrtmp_jobs_{status}", f"Jobs that are {status} now", value=value)
        sessions = [s for s in list(self.coordinator.nodes.values()) if s.status != "offline"]
        busy = sum(1 for s in sessions if s.attempts)
        yield GaugeMetricFamily("ffrtmp_nodes_total", "Connected worker nodes", value=len(sessions))
        yield GaugeMetricFamily("ffrtmp_nodes_available", "Connected nodes with a free slot",
                                value=sum(1 for s in sessions if s.accepting and len(s.attempts) < s.slots))
        yield GaugeMetricFamily("ffrtmp_nodes_busy", "Connected nodes running at least one job", value=busy)
        counters = self.coordinator.counters
        for name, value, doc in (
            ("ffrtmp_retries", counters.retries, "Attempts sent back to pending for a retry"),
            ("ffrtmp_stale_messages", counters.stale, "Messages from stale attempts, ignored"),
            ("ffrtmp_dead_nodes", counters.dead_nodes, "Nodes declared dead after the node timeout"),
            ("ffrtmp_malformed_messages", counters.malformed, "Messages dropped as malformed"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        by_kind = CounterMetricFamily("ffrtmp_messages", "Messages handled, by kind", labels=["kind"])
        for kind, value in sorted(counters.messages.items()):
            by_kind.add_metric([kind], value)
        yield by_kind


class MasterMetrics(Observer):
    def __init__(self, coordinator: Coordinator, db_path: str) -> None:
        self.registry = CollectorRegistry()
        self.collector = MasterCollector(coordinator, db_path)
        self.registry.register(self.collector)
        self.duration = Histogram("ffrtmp_job_duration_seconds", "Run time of finished jobs (start to end)",
                                  ["queue", "engine", "status"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.last_loop = time.monotonic()
        coordinator.observer.add(self)

    def job_finished(self, job: dict[str, Any], now: float) -> None:
        start, end = job.get("started_at"), job.get("finished_at")
        if start is not None and end is not None:
            self.duration.labels(job["queue"], job["engine"], job["status"]).observe(max(0.0, end - start))


def serve(metrics: MasterMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """The master's endpoint: /metrics, /health (the store answers), /ready (the loop is alive)."""
    return serve_http(metrics.registry, host, port, {
        "/health": lambda: metrics.collector.healthy(),
        "/ready": lambda: time.monotonic() - metrics.last_loop < 5,
    })


def serve_http(registry: CollectorRegistry, host: str, port: int,
               checks: dict[str, Callable[[], bool]]) -> ThreadingHTTPServer:
    """Serve /metrics from `registry` and each check path as 200 ok / 503, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in checks:
                ok = checks[path]()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"unavailable\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
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
