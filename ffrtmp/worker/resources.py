"""A worker's resources, sampled for heartbeats: CPU, load, memory, disk of the work dir, NVIDIA GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from ffrtmp.worker.tools import run_quiet

GPU_SAMPLE_EVERY = 10.0
"""nvidia-smi costs tens of milliseconds; GPU figures are refreshed at most this often."""


class ResourceSampler:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.nvidia_smi = shutil.which("nvidia-smi")
        self._gpus: list[dict[str, Any]] = []
        self._gpus_at = 0.0
        self.last: dict[str, Any] | None = None
        psutil.cpu_percent(interval=None)  # the first call only primes the counter

    def sample(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        try:
            disk = shutil.disk_usage(self.work_dir)
            disk_free, disk_percent = disk.free, 100.0 * disk.used / disk.total if disk.total else 0.0
        except OSError:
            disk_free, disk_percent = 0, 100.0
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        self.last = {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpu_count": psutil.cpu_count() or 1,
            "load1": round(load[0], 2),
            "memory_total": memory.total,
            "memory_available": memory.available,
            "memory_percent": memory.percent,
            "disk_free": disk_free,
            "disk_percent": round(disk_percent, 1),
            "gpus": self.gpus(),
        }
        return self.last

    def gpus(self) -> list[dict[str, Any]]:
        if self.nvidia_smi is None or time.monotonic() - self._gpus_at < GPU_SAMPLE_EVERY:
            return self._gpus
        self._gpus_at = time.monotonic()
        self._gpus = parse_nvidia_smi(self._query())
        return self._gpus

    def _query(self) -> str:
        assert self.nvidia_smi is not None
        try:
            done = run_quiet([self.nvidia_smi, "--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
                              "--format=csv,noheader,nounits"], timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout if done.returncode == 0 else ""


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total --format=csv,...`."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            gpus.append({"index": int(parts[0]), "name": parts[1], "utilization": float(parts[2]),
                         "memory_used_mib": float(parts[3]), "memory_total_mib": float(parts[4])})
        except ValueError:
            continue
    return gpus
