"""Prometheus metrics of the master (README "Metrics and monitoring") on their own registry, plus /health and /ready.

Three sources, each read where it is cheap and safe:
- job counts and queue depth, at scrape time, through the store's reader (`Store.reader()`: a connection of
  its own, so the HTTP thread never touches the coordinator's);
- nodes and event counters, at scrape time, from the coordinator's memory (copied first: it changes under us);
- waits, run times, finished jobs and commit latency, observed as they happen through the Observer hooks.

The names are a contract (the README's table, contrib/ dashboards and alert rules, tests/test_contrib.py checks them).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ffrtmp import __version__
from ffrtmp.httpserve import as_number, serve_http
from ffrtmp.jobspec import PRIORITY_WEIGHTS, QUEUE_WEIGHTS
from ffrtmp.master.observer import Observer
from ffrtmp.master.quality_metrics import QualityMetrics
from ffrtmp.master.store import StoreError, StoreReader
from ffrtmp.master.store.health import free_bytes

if TYPE_CHECKING:
    from ffrtmp.master.coordinator import Coordinator
    from ffrtmp.master.nodes import NodeSession

log = logging.getLogger("ffrtmp.metrics")

DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
LOOP_STALE = 5.0
"""/health fails when the master's loop has not ticked for this long (it ticks every 0.1 s)."""

P = ParamSpec("P")


class MasterCollector(Collector):
    def __init__(self, coordinator: Coordinator, reader: StoreReader) -> None:
        self.coordinator = coordinator
        self.reader = reader

    def store_answers(self) -> bool:
        try:
            self.reader.ping()
            return True
        except StoreError as exc:
            log.warning("the store does not answer: %s", exc)
            return False

    def collect(self) -> Iterator[Any]:
        yield from self._jobs()
        yield from self._nodes()
        yield from self._counters()
        yield GaugeMetricFamily("ffrtmp_master_uptime_seconds", "Seconds since this master started",
                                value=time.monotonic() - self.coordinator.started_mono)
        yield GaugeMetricFamily("ffrtmp_log_followers", "Log followers and waits open now (capped by "
                                "--max-followers)", value=self.coordinator.logbook.open_followers)
        info = GaugeMetricFamily("ffrtmp_master_info", "Always 1; the master's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield from self._store()

    def _store(self) -> Iterator[Any]:
        health = self.coordinator.store_health
        yield GaugeMetricFamily("ffrtmp_store_writable", "1 while the store takes writes; 0 in degraded mode "
                                "(disk full or failing, or the database server lost: submits are refused)",
                                value=0 if health.degraded else 1)
        free = free_bytes(health.directory)
        if free is not None:
            yield GaugeMetricFamily("ffrtmp_store_free_bytes", "Free space on the store's disk", value=free)

    def _jobs(self) -> Iterator[Any]:
        try:
            counts, depth = self.reader.job_counts()
        except StoreError as exc:
            log.warning("job metrics left out of this scrape: %s", exc)
            return
        for status in ("pending", "running", "completed", "failed", "canceled"):
            # `assigned` is a running job whose worker has not said STARTED yet.
            value = counts.get(status, 0) + (counts.get("assigned", 0) if status == "running" else 0)
            yield GaugeMetricFamily(f"ffrtmp_jobs_{status}", f"Jobs that are {status} now", value=value)
        family = GaugeMetricFamily("ffrtmp_queue_depth", "Pending jobs by queue and priority (retries waiting "
                                   "for their backoff included)", labels=["queue", "priority"])
        # Every standard pair is always there (0 when empty), so alerts with `for:` see a continuous series.
        pairs = {(q, p): 0 for q in QUEUE_WEIGHTS for p in PRIORITY_WEIGHTS}
        pairs.update(depth)
        for (queue, priority), n in pairs.items():
            family.add_metric([queue, priority], n)
        yield family

    def _nodes(self) -> Iterator[Any]:
        sessions: list[NodeSession] = list(self.coordinator.nodes.values())
        live = [s for s in sessions if s.status != "offline"]
        yield GaugeMetricFamily("ffrtmp_nodes_total", "Connected worker nodes", value=len(live))
        yield GaugeMetricFamily("ffrtmp_nodes_available", "Connected nodes with a free slot",
                                value=sum(1 for s in live if s.accepting and len(s.attempts) < s.slots))
        yield GaugeMetricFamily("ffrtmp_nodes_busy", "Connected nodes running at least one job",
                                value=sum(1 for s in live if s.attempts))
        up = GaugeMetricFamily("ffrtmp_node_up", "1 while a node is connected, 0 once it went offline "
                               "(kept until the master restarts)", labels=["node"])
        draining = GaugeMetricFamily("ffrtmp_node_draining", "1 while a node finishes its jobs and takes no new "
                                     "ones", labels=["node"])
        slots = GaugeMetricFamily("ffrtmp_node_slots", "Job slots of a connected node", labels=["node"])
        running = GaugeMetricFamily("ffrtmp_node_running", "Attempts a connected node holds a slot for",
                                    labels=["node"])
        cpu = GaugeMetricFamily("ffrtmp_node_cpu_percent", "CPU use of a connected node (its last heartbeat)",
                                labels=["node"])
        memory = GaugeMetricFamily("ffrtmp_node_memory_percent", "Memory use of a connected node (its last "
                                   "heartbeat)", labels=["node"])
        disk = GaugeMetricFamily("ffrtmp_node_disk_free_bytes", "Free space in a connected node's work dir",
                                 labels=["node"])
        gpu = GaugeMetricFamily("ffrtmp_node_gpu_utilization_percent", "NVIDIA GPU use of a connected node",
                                labels=["node", "gpu"])
        for session in sessions:
            name = session.name
            up.add_metric([name], 0 if session.status == "offline" else 1)
            if session.status == "offline":
                continue  # its last figures are stale: only `up` stays
            draining.add_metric([name], 1 if session.status == "draining" else 0)
            slots.add_metric([name], session.slots)
            running.add_metric([name], session.busy)
            resources = session.resources if isinstance(session.resources, dict) else {}
            for family, key in ((cpu, "cpu_percent"), (memory, "memory_percent"), (disk, "disk_free")):
                value = as_number(resources.get(key))
                if value is not None:
                    family.add_metric([name], value)
            gpus = resources.get("gpus")
            for entry in gpus if isinstance(gpus, list) else []:
                value = as_number(entry.get("utilization")) if isinstance(entry, dict) else None
                if value is not None:
                    gpu.add_metric([name, str(entry.get("index", "?"))], value)
        yield from (up, draining, slots, running, cpu, memory, disk, gpu)

    def _counters(self) -> Iterator[Any]:
        counters = self.coordinator.counters
        for name, value, doc in (
            ("ffrtmp_retries", counters.retries, "Attempts sent back to pending for a retry"),
            ("ffrtmp_stale_messages", counters.stale, "Messages from stale attempts, ignored"),
            ("ffrtmp_dead_nodes", counters.dead_nodes, "Nodes declared offline after the node timeout"),
            ("ffrtmp_malformed_messages", counters.malformed, "Messages dropped as malformed or refused"),
            ("ffrtmp_stalled_attempts", counters.stalled, "Attempts stopped because their progress stopped"),
            ("ffrtmp_timed_out_attempts", counters.timed_out, "Attempts stopped past their job's timeout"),
            ("ffrtmp_recalled_attempts", counters.recalled,
             "Prefetched attempts asked back from behind a long job for a node with a free slot"),
            ("ffrtmp_unroutable_messages", counters.unroutable, "Messages that could not reach their peer"),
            ("ffrtmp_preauth_dropped_frames", self.coordinator.inbound.dropped + counters.refused_batches,
             "Frames from peers that are not workers dropped unread (over their budget, or a BATCH)"),
            ("ffrtmp_log_duplicate_lines", self.coordinator.logbook.duplicates,
             "Log lines a worker sent again (after a reconnect) that were stored already, ignored"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        by_kind = CounterMetricFamily("ffrtmp_messages", "Messages handled, by kind", labels=["kind"])
        for kind, value in sorted(dict(counters.messages).items()):
            by_kind.add_metric([kind], value)
        yield by_kind
        # Always a valid family, with no samples until a request is refused, so queries can rely on the name.
        limited = CounterMetricFamily("ffrtmp_rate_limited", "Requests refused by rate limiting",
                                      labels=["kind", "tenant"])
        for (kind, tenant), value in sorted(dict(counters.rate_limited).items()):
            limited.add_metric([str(kind), str(tenant)], value)
        yield limited


def _never_raises(hook: Callable[Concatenate[MasterMetrics, P], None]) -> Callable[Concatenate[MasterMetrics, P], None]:
    """Observer hooks run inside the coordinator's transaction: a metrics bug must never cost it a batch."""

    def guarded(self: MasterMetrics, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception:
            log.debug("metrics hook %s failed", hook.__name__, exc_info=True)

    functools.update_wrapper(guarded, hook)  # its name and doc; the callable keeps its own type
    return guarded


class MasterMetrics(Observer):
    def __init__(self, coordinator: Coordinator, reader: StoreReader) -> None:
        self.registry = CollectorRegistry()
        self.collector = MasterCollector(coordinator, reader)
        self.registry.register(self.collector)
        registry = self.registry
        self.duration = Histogram("ffrtmp_job_duration_seconds", "Run time of jobs that ended, first start to "
                                  "end (engine as submitted)", ["queue", "engine", "status"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.wait = Histogram("ffrtmp_job_wait_seconds", "Time from submit to a job's first start (engine as "
                              "submitted)", ["queue", "engine"], buckets=WAIT_BUCKETS, registry=registry)
        self.commit = Histogram("ffrtmp_store_commit_seconds", "Duration of the store's transactions (each batch "
                                "and tick)", buckets=COMMIT_BUCKETS, registry=registry)
        self.submitted = Counter("ffrtmp_jobs_submitted", "Jobs accepted", ["queue", "priority"], registry=registry)
        self.finished = Counter("ffrtmp_jobs_finished", "Jobs that ended (completed, failed, canceled)",
                                ["queue", "status"], registry=registry)
        self.failures = Counter("ffrtmp_attempt_failures", "Attempts that ended badly, by failure (retried or "
                                "not)", ["failure"], registry=registry)
        self.started = time.monotonic()
        self.last_loop = self.started
        """The server sets it after each tick; /ready wants one tick past start-up (restore done)."""
        self.stale_after = LOOP_STALE
        coordinator.observer.add(self)
        self.quality = QualityMetrics(registry, coordinator.observer)  # SPEC §9's series: quality_metrics.py

    # ---- observer hooks (the coordinator's thread) ------------------------------------------------

    @_never_raises
    def jobs_submitted(self, jobs: list[dict[str, Any]], now: float) -> None:
        for (queue, priority), n in Tally((job["queue"], job["priority"]) for job in jobs).items():
            self.submitted.labels(queue, priority).inc(n)

    @_never_raises
    def job_running(self, job: Mapping[str, Any], now: float) -> None:
        created, started = job.get("created_at"), job.get("started_at")
        # The store keeps the first start, so only the first attempt's start (started_at == now) is a wait.
        if created is not None and started is not None and started == now:
            self.wait.labels(job["queue"], job["engine"]).observe(max(0.0, started - created))

    @_never_raises
    def attempt_failed(self, job_id: str, attempt: int, node: str, failure: str, error: str,
                       retry_at: float | None, now: float) -> None:
        self.failures.labels(str(failure)).inc()

    @_never_raises
    def job_finished(self, job: Mapping[str, Any], now: float) -> None:
        self.finished.labels(job["queue"], job["status"]).inc()
        start, end = job.get("started_at"), job.get("finished_at")
        if start is not None and end is not None:
            self.duration.labels(job["queue"], job["engine"], job["status"]).observe(max(0.0, end - start))

    @_never_raises
    def committed(self, seconds: float) -> None:
        self.commit.observe(seconds)

    # ---- health (the HTTP thread) -----------------------------------------------------------------

    def loop_alive(self) -> bool:
        return time.monotonic() - self.last_loop < self.stale_after

    def healthy(self) -> bool | str:
        """The master is up: its loop ticks (or is just starting) and its store answers and takes writes
        (degraded: the reason, answered with 503)."""
        fault = self.collector.coordinator.store_health.fault
        if fault is not None:
            return f"degraded: {fault}"
        return self.loop_alive() and self.collector.store_answers()

    def ready(self) -> bool:
        """Restored and ticking: the loop has ticked at least once since start-up, and recently."""
        return self.last_loop > self.started and self.loop_alive()


def serve(metrics: MasterMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """The master's endpoint: /metrics, /health (loop alive, store answers), /ready (restored and ticking)."""
    return serve_http(metrics.registry, host, port, {"/health": metrics.healthy, "/ready": metrics.ready})
