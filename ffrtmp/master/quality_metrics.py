"""Prometheus series of completed jobs' quality, energy and cost (SPEC §9), observed as each job ends.

- `ffrtmp_job_psnr_db`, `ffrtmp_job_ssim`, `ffrtmp_job_vmaf`: histograms by scenario and encoder;
- `ffrtmp_job_vmaf_per_watt`: VMAF per average watt of the encode (energy_joules / run time), the seed's
  QoE exporter's "quality per watt", by scenario and encoder;
- `ffrtmp_job_energy_joules_total`, `ffrtmp_job_cpu_seconds_total`, `ffrtmp_job_cost_total`: counters by
  tenant (cost by tenant and currency).

Label values come from users and workers (any scenario name is a label, an encoder name is the worker's), so
each label keeps its first MAX_VALUES values and folds the rest into "other": a bounded number of series,
whatever is submitted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from ffrtmp.master.observer import Observer, Observers

log = logging.getLogger("ffrtmp.metrics")

MAX_VALUES = 50
"""Distinct values one label may take before further ones read "other"."""
OTHER = "other"
PSNR_BUCKETS = (20, 25, 28, 30, 32, 34, 36, 38, 40, 42, 45, 50)
SSIM_BUCKETS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
VMAF_BUCKETS = (20, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97, 99)
PER_WATT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


class BoundedLabel:
    """The first MAX_VALUES distinct values of one label as given; any later new one is "other"."""

    def __init__(self, limit: int = MAX_VALUES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        text = str(value)[:100] if isinstance(value, str) and value else "unknown"
        if text in self.seen:
            return text
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(text)
        return text


def _figure(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


class QualityMetrics(Observer):
    def __init__(self, registry: CollectorRegistry, observers: Observers) -> None:
        self.scenario, self.encoder, self.tenant = BoundedLabel(), BoundedLabel(), BoundedLabel()
        by_encode = ["scenario", "encoder"]
        self.quality = {
            "psnr_db": Histogram("ffrtmp_job_psnr_db", "PSNR of completed jobs' outputs against their sources (dB)",
                                 by_encode, buckets=PSNR_BUCKETS, registry=registry),
            "ssim": Histogram("ffrtmp_job_ssim", "SSIM (All, 0-1) of completed jobs' outputs", by_encode,
                              buckets=SSIM_BUCKETS, registry=registry),
            "vmaf": Histogram("ffrtmp_job_vmaf", "VMAF (0-100) of completed jobs' outputs", by_encode,
                              buckets=VMAF_BUCKETS, registry=registry),
        }
        self.per_watt = Histogram("ffrtmp_job_vmaf_per_watt", "Quality per watt: a completed job's VMAF per "
                                  "average watt of its encode (energy_joules / run time)", by_encode,
                                  buckets=PER_WATT_BUCKETS, registry=registry)
        self.energy = Counter("ffrtmp_job_energy_joules", "Energy completed jobs used (joules; see each job's "
                              "energy_source)", ["tenant"], registry=registry)
        self.cpu = Counter("ffrtmp_job_cpu_seconds", "CPU time of completed jobs' process trees", ["tenant"],
                           registry=registry)
        self.cost = Counter("ffrtmp_job_cost", "Cost of completed jobs (master pricing: --energy-price, "
                            "--cpu-hour-price)", ["tenant", "currency"], registry=registry)
        observers.add(self)

    def job_finished(self, job: Mapping[str, Any], now: float) -> None:
        try:
            self._observe(job)
        except Exception:  # inside the coordinator's transaction: a metrics bug must never cost it a batch
            log.debug("quality metrics of job %s failed", job.get("id"), exc_info=True)

    def _observe(self, job: Mapping[str, Any]) -> None:
        if job.get("status") != "completed":
            return
        metrics = job.get("metrics")
        if not isinstance(metrics, Mapping):
            return
        labels = (self.scenario(job.get("scenario")), self.encoder(metrics.get("encoder")))
        for key, histogram in self.quality.items():
            if (value := _figure(metrics, key)) is not None:
                histogram.labels(*labels).observe(value)
        tenant = self.tenant(job.get("tenant") or "default")
        joules = _figure(metrics, "energy_joules")
        if joules is not None:
            self.energy.labels(tenant).inc(joules)
            start, end, vmaf = job.get("started_at"), job.get("finished_at"), _figure(metrics, "vmaf")
            if vmaf is not None and joules > 0 and isinstance(start, int | float) and isinstance(end, int | float) \
                    and end > start:
                self.per_watt.labels(*labels).observe(vmaf / (joules / (end - start)))
        if (cpu := _figure(metrics, "cpu_seconds")) is not None:
            self.cpu.labels(tenant).inc(cpu)
        cost, currency = _figure(metrics, "cost"), metrics.get("currency")
        if cost is not None and isinstance(currency, str):
            self.cost.labels(tenant, currency[:3]).inc(cost)
