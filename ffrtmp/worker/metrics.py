"""A worker's Prometheus endpoint: resources, slots, running jobs and their speed, usable encoders."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ffrtmp.metrics import serve_http

if TYPE_CHECKING:
    from ffrtmp.worker.agent import Agent

log = logging.getLogger("ffrtmp.worker")


class WorkerCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        agent = self.agent
        resources = agent.sampler.last or {}
        yield GaugeMetricFamily("ffrtmp_worker_cpu_percent", "CPU use of the machine",
                                value=resources.get("cpu_percent", 0.0))
        yield GaugeMetricFamily("ffrtmp_worker_memory_percent", "Memory use of the machine",
                                value=resources.get("memory_percent", 0.0))
        yield GaugeMetricFamily("ffrtmp_worker_slots", "Concurrent job slots", value=agent.options.slots)
        attempts = list(agent.attempts.values())
        yield GaugeMetricFamily("ffrtmp_worker_active_jobs", "Attempts running now", value=len(attempts))
        yield CounterMetricFamily("ffrtmp_worker_jobs_completed", "Attempts completed", value=agent.completed)
        yield CounterMetricFamily("ffrtmp_worker_jobs_failed", "Attempts that failed or were canceled",
                                  value=agent.failed)
        encoders = GaugeMetricFamily("ffrtmp_worker_encoder_available", "1 when an encoder passed its test encode",
                                     labels=["encoder", "codec", "hardware"])
        for encoder in agent.capabilities.encoders:
            encoders.add_metric([encoder.name, encoder.codec, str(encoder.hardware).lower()],
                                1.0 if encoder.available else 0.0)
        yield encoders
        fps = GaugeMetricFamily("ffrtmp_worker_job_fps", "Frames per second of a running job", labels=["job"])
        speed = GaugeMetricFamily("ffrtmp_worker_job_speed", "Speed (x real time) of a running job", labels=["job"])
        for attempt in attempts:
            if isinstance(attempt.progress.get("fps"), int | float):
                fps.add_metric([attempt.job], attempt.progress["fps"])
            if isinstance(attempt.progress.get("speed"), int | float):
                speed.add_metric([attempt.job], attempt.progress["speed"])
        yield fps
        yield speed


def serve_worker_metrics(agent: Agent, port: int, host: str = "0.0.0.0") -> None:
    registry = CollectorRegistry()
    registry.register(WorkerCollector(agent))
    try:
        serve_http(registry, host, port, {"/health": lambda: True, "/ready": lambda: agent.welcomed})
    except OSError as exc:
        log.warning("worker metrics not served on port %d: %s (use --metrics-port)", port, exc)
