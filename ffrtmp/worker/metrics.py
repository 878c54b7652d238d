"""A worker's Prometheus endpoint (`--metrics-port`, 9091): resources, slots, running jobs and their speed,
engines and encoders.

Scrapes run on the HTTP thread: everything is read from the agent's memory, copied first (runner threads
replace an attempt's `progress` snapshot, never mutate it; the loop adds and removes attempts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ffrtmp import __version__
from ffrtmp.httpserve import as_number, serve_http
from ffrtmp.worker.capabilities import KNOWN_ENGINES

if TYPE_CHECKING:
    from ffrtmp.worker.agent import Agent

log = logging.getLogger("ffrtmp.worker")


def _flag(value: bool) -> str:
    return "true" if value else "false"


class WorkerCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        agent = self.agent
        info = GaugeMetricFamily("ffrtmp_worker_info", "Always 1; this worker's node name and version",
                                 labels=["node", "version"])
        info.add_metric([agent.options.name, __version__], 1)
        yield info
        yield GaugeMetricFamily("ffrtmp_worker_connected", "1 while the master has welcomed this worker",
                                value=1 if agent.welcomed else 0)
        yield GaugeMetricFamily("ffrtmp_worker_draining", "1 while the worker finishes its jobs and takes no new "
                                "ones", value=1 if agent.draining else 0)
        yield from self._resources()
        yield GaugeMetricFamily("ffrtmp_worker_slots", "Concurrent job slots", value=agent.options.slots)
        held = agent.held.copy()  # prefetched, not started: no slot, nothing to show yet
        attempts = [a for a in list(agent.attempts.values()) if a.job not in held]
        yield GaugeMetricFamily("ffrtmp_worker_active_jobs", "Attempts running now", value=len(attempts))
        yield CounterMetricFamily("ffrtmp_worker_jobs_completed", "Attempts completed", value=agent.completed)
        yield CounterMetricFamily("ffrtmp_worker_jobs_failed", "Attempts that failed or were canceled",
                                  value=agent.failed)
        yield from self._capabilities()
        # Labelled by slot, not job id: this endpoint has no authentication, and job ids of every tenant
        # would let anyone name other tenants' jobs (`nodes show` maps slots to jobs for those allowed).
        fps = GaugeMetricFamily("ffrtmp_worker_job_fps", "Frames per second of a running job", labels=["slot"])
        speed = GaugeMetricFamily("ffrtmp_worker_job_speed", "Speed (x real time) of a running job", labels=["slot"])
        progress = GaugeMetricFamily("ffrtmp_worker_job_progress", "Progress (0-1) of a running job",
                                     labels=["slot"])
        for slot, attempt in enumerate(sorted(attempts, key=lambda a: (a.received_at, a.job))):
            snapshot = attempt.progress  # replaced whole by the runner, so one read is consistent
            for family, key in ((fps, "fps"), (speed, "speed"), (progress, "progress")):
                value = as_number(snapshot.get(key))
                if value is not None:
                    family.add_metric([str(slot)], value)
        yield from (fps, speed, progress)

    def _resources(self) -> Iterator[Any]:
        """The figures of the last heartbeat's sample (taken every heartbeat interval by the loop)."""
        resources = self.agent.sampler.last or {}
        for name, key, doc in (
            ("ffrtmp_worker_cpu_percent", "cpu_percent", "CPU use of the machine"),
            ("ffrtmp_worker_memory_percent", "memory_percent", "Memory use of the machine"),
            ("ffrtmp_worker_disk_free_bytes", "disk_free", "Free space in the work dir"),
        ):
            yield GaugeMetricFamily(name, doc, value=as_number(resources.get(key)) or 0.0)
        gpu = GaugeMetricFamily("ffrtmp_worker_gpu_utilization_percent", "NVIDIA GPU use (nvidia-smi)",
                                labels=["gpu", "model"])
        for entry in resources.get("gpus") or []:
            value = as_number(entry.get("utilization"))
            if value is not None:
                gpu.add_metric([str(entry.get("index")), str(entry.get("name"))], value)
        yield gpu

    def _capabilities(self) -> Iterator[Any]:
        capabilities = self.agent.capabilities
        engines = GaugeMetricFamily("ffrtmp_worker_engine_available", "1 when this worker offers an engine",
                                    labels=["engine"])
        for engine in KNOWN_ENGINES:
            engines.add_metric([engine], 1 if engine in capabilities.engines else 0)
        yield engines
        encoders = GaugeMetricFamily(
            "ffrtmp_worker_encoder_available", "1 when jobs can use an encoder: its test encode passed and its "
            "engine is offered; every encoder found is listed (validated: whether a test encode was run)",
            labels=["encoder", "codec", "hardware", "engine", "validated"])
        for encoder in capabilities.encoders:
            usable = encoder.available and encoder.engine in capabilities.engines
            encoders.add_metric([encoder.name, encoder.codec, _flag(encoder.hardware), encoder.engine,
                                 _flag(encoder.validated)], 1 if usable else 0)
        yield encoders


def serve_worker_metrics(agent: Agent, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer | None:
    """Serve /metrics, /health (the process is up) and /ready (the master welcomed us); None when the port
    cannot be bound (the worker runs on without metrics)."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(agent))
    try:
        return serve_http(registry, host, port, {"/health": lambda: True, "/ready": lambda: agent.welcomed})
    except OSError as exc:
        log.warning("worker metrics not served on port %d: %s (use --metrics-port)", port, exc)
        return None
