"""The energy one job used, and how that figure was obtained (`energy_source`).

- `rapl`: the CPU packages' energy counters (`/sys/class/powercap/intel-rapl:N/energy_uj`, package domains
  only: their sub-domains are parts of them). A counter wraps at `max_energy_range_uj`; it is read with the
  runner's loop, so a wrap between two reads is one addition of the range. The packages' energy over the job
  is the whole machine's, so the job is given the share its CPU time is of all the CPU time the machine spent
  meanwhile (concurrent jobs, and anything else running, take theirs).
- `nvml`: a GPU encode (NVENC): the GPU's power draw, sampled from `nvidia-smi --query-gpu=power.draw` and
  integrated over the job, plus the CPU side (by RAPL when readable, else estimated).
- `estimated`: CPU time × a per-core figure (`--watts-per-core`, FFRTMP_WATTS_PER_CORE): most machines do not
  let an unprivileged worker read RAPL (its counters are root-only since Linux 5.10's fix of CVE-2020-8694).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ffrtmp.worker.tools import run_quiet

POWERCAP = Path("/sys/class/powercap")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")
"""Top-level RAPL zones are packages (AMD's RAPL shows under the same names); `intel-rapl:0:0` are sub-zones."""
READ_INTERVAL = 1.0
"""Seconds between RAPL reads: far below any counter's wrap time (hours at package power)."""
GPU_INTERVAL = 0.5
"""Seconds between nvidia-smi power samples (each costs tens of milliseconds)."""
GPU_ENCODER = re.compile(r"nvenc|^nv[a-z0-9]*enc$")
"""FFmpeg's NVENC encoders (h264_nvenc) and GStreamer's NVIDIA elements (nvh264enc, nvv4l2h264enc)."""


@dataclass(frozen=True)
class Energy:
    joules: float
    source: str
    """"rapl", "nvml" or "estimated"."""
    how: str


@dataclass(frozen=True)
class RaplZone:
    energy: Path
    """Its `energy_uj` file."""
    max_range_uj: int


def package_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """The package zones whose counter this process can read (none where RAPL is absent or root-only)."""
    zones: list[RaplZone] = []
    with contextlib.suppress(OSError):
        for entry in sorted(root.iterdir()):
            if not _PACKAGE.match(entry.name):
                continue
            try:
                if not (entry / "name").read_text().strip().startswith("package"):
                    continue
                int((entry / "energy_uj").read_text())
                zones.append(RaplZone(entry / "energy_uj", int((entry / "max_energy_range_uj").read_text())))
            except (OSError, ValueError):
                continue
    return zones


class RaplCounter:
    """The packages' energy since it was made, summed over zones, across wraps of their counters."""

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self._last = [self._read(zone) for zone in zones]
        self.total_uj = 0
        self.wraps = 0

    @staticmethod
    def _read(zone: RaplZone) -> int | None:
        try:
            return int(zone.energy.read_text())
        except (OSError, ValueError):
            return None

    def read(self) -> None:
        for i, zone in enumerate(self.zones):
            now, last = self._read(zone), self._last[i]
            if now is None:
                continue
            if last is not None:
                delta = now - last
                if delta < 0:  # the counter passed max_energy_range_uj and started again from 0
                    delta += zone.max_range_uj
                    self.wraps += 1
                self.total_uj += delta
            self._last[i] = now

    @property
    def joules(self) -> float:
        return self.total_uj / 1e6


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent not idle since boot (guest time is already inside user time on Linux)."""
    times = psutil.cpu_times()
    idle = sum(getattr(times, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice"))
    return float(sum(times)) - idle


def is_gpu_encoder(encoder: str | None) -> bool:
    return bool(encoder) and GPU_ENCODER.search(str(encoder)) is not None


@dataclass
class GpuPower:
    """Samples GPU 0's power draw in a thread (NVENC sessions run on GPU 0 unless told otherwise)."""

    nvidia_smi: str
    interval: float = GPU_INTERVAL
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpu-power", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            watts = self.read_watts()
            if watts is not None:
                self.samples.append((time.monotonic(), watts))
            self._stop.wait(self.interval)

    def read_watts(self) -> float | None:
        argv = [self.nvidia_smi, "--query-gpu=power.draw", "--format=csv,noheader,nounits", "-i", "0"]
        try:
            done = run_quiet(argv, timeout=5)
            return float(done.stdout.strip().splitlines()[0]) if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
            return None  # "[N/A]" on GPUs that do not report power

    def stop(self, started: float, ended: float) -> float | None:
        """Joules over [started, ended] (trapezoids between samples, held flat to the ends), None unsampled."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        points = [(t, w) for t, w in self.samples if started <= t <= ended]
        if not points:
            return None
        joules = points[0][1] * (points[0][0] - started) + points[-1][1] * (ended - points[-1][0])
        for (t0, w0), (t1, w1) in zip(points, points[1:], strict=False):
            joules += (w0 + w1) / 2 * (t1 - t0)
        return joules


class EnergyMeter:
    """One job's meter: made when its process starts, `sample`d with the read loop, `finish`ed with its CPU time."""

    def __init__(self, *, watts_per_core: float, gpu_encoder: bool = False, nvidia_smi: str | None = None,
                 powercap: Path = POWERCAP) -> None:
        self.watts_per_core = watts_per_core
        self.started = time.monotonic()
        zones = package_zones(powercap)
        self.rapl = RaplCounter(zones) if zones else None
        self.busy_at_start = machine_busy_seconds()
        self._next_read = self.started + READ_INTERVAL
        self.gpu: GpuPower | None = None
        self.gpu_encoder = gpu_encoder
        if gpu_encoder and nvidia_smi:
            self.gpu = GpuPower(nvidia_smi)
            self.gpu.start()

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.rapl is not None and now >= self._next_read:
            self._next_read = now + READ_INTERVAL
            self.rapl.read()

    def finish(self, cpu_seconds: float) -> Energy:
        ended = time.monotonic()
        cpu = self._cpu_energy(cpu_seconds)
        if not self.gpu_encoder:
            return cpu
        gpu_joules = self.gpu.stop(self.started, ended) if self.gpu is not None else None
        if gpu_joules is None:
            return Energy(cpu.joules, cpu.source, f"{cpu.how}; the GPU's power could not be read (nvidia-smi "
                          "power.draw), so the GPU's share is missing")
        samples = len(self.gpu.samples) if self.gpu is not None else 0
        return Energy(round(gpu_joules + cpu.joules, 3), "nvml",
                      f"GPU 0 power.draw from nvidia-smi, {samples} samples over {ended - self.started:.1f}s "
                      f"({gpu_joules:.1f} J), plus CPU: {cpu.how} ({cpu.joules:.1f} J)")

    def _cpu_energy(self, cpu_seconds: float) -> Energy:
        if self.rapl is not None:
            self.rapl.read()
            busy = machine_busy_seconds() - self.busy_at_start
            share = cpu_seconds / max(busy, cpu_seconds) if cpu_seconds > 0 else 0.0
            return Energy(round(self.rapl.joules * share, 3), "rapl",
                          f"RAPL package energy {self.rapl.joules:.1f} J over the job ({len(self.rapl.zones)} "
                          f"package(s), {self.rapl.wraps} counter wrap(s)) × its CPU share {share:.3f} "
                          f"({cpu_seconds:.2f} of {busy:.2f} CPU-seconds the machine spent)")
        return Energy(round(cpu_seconds * self.watts_per_core, 3), "estimated",
                      f"{cpu_seconds:.2f} CPU-seconds × {self.watts_per_core:g} W per core (--watts-per-core; "
                      "RAPL is not readable here)")
