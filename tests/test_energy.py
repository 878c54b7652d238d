"""Job energy: the RAPL reader on a powercap fixture directory (package zones only, counter wraps), the
share of concurrent jobs, the estimate where RAPL cannot be read, and the GPU power integral."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from ffrtmp.worker import energy
from ffrtmp.worker.energy import EnergyMeter, GpuPower, RaplCounter, is_gpu_encoder, package_zones

MAX_RANGE = 262_143_328_850
"""A real package zone's max_energy_range_uj (about 262 kJ)."""


def zone(root: Path, name: str, label: str, uj: int, max_range: int = MAX_RANGE) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def set_uj(path: Path, uj: int) -> None:
    (path / "energy_uj").write_text(f"{uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)  # a part of package 0: never added to it
    zone(root, "intel-rapl:1", "package-1", 2_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", 9_000_000)  # the same package through MMIO: not twice
    zone(root, "intel-rapl:2", "psys", 7_000_000)  # the platform, not a package
    return root


def test_only_package_zones_are_read(powercap: Path) -> None:
    names = [z.energy.parent.name for z in package_zones(powercap)]
    assert names == ["intel-rapl:0", "intel-rapl:1"]


def test_a_counter_that_wraps_is_counted_across_the_wrap(powercap: Path) -> None:
    counter = RaplCounter(package_zones(powercap))
    set_uj(powercap / "intel-rapl:0", MAX_RANGE - 1_000_000)
    set_uj(powercap / "intel-rapl:1", 3_000_000)
    counter.read()
    set_uj(powercap / "intel-rapl:0", 4_000_000)  # passed the range: 1 J to the top, then 4 J
    set_uj(powercap / "intel-rapl:1", 3_500_000)
    counter.read()
    expected_uj = (MAX_RANGE - 2_000_000) + 1_000_000 + 4_000_000 + 1_000_000 + 500_000
    assert counter.total_uj == expected_uj
    assert counter.wraps == 1
    assert counter.joules == pytest.approx(expected_uj / 1e6)


def test_an_unreadable_counter_is_no_zone(powercap: Path) -> None:
    for name in ("intel-rapl:0", "intel-rapl:1"):
        counter = powercap / name / "energy_uj"
        if os.geteuid() == 0:  # root reads any file: a read that fails all the same
            counter.unlink()
            counter.mkdir()
        else:
            counter.chmod(0)  # as Linux ships it since CVE-2020-8694: root only
    assert package_zones(powercap) == []
    assert package_zones(powercap / "absent") == []


def test_rapl_energy_is_shared_by_cpu_time(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packages' energy over the job is the machine's: the job gets its CPU time's share of it."""
    busy = iter([100.0, 104.0])  # the machine spent 4 CPU-seconds while the job ran
    monkeypatch.setattr(energy, "machine_busy_seconds", lambda: next(busy))
    meter = EnergyMeter(watts_per_core=8.0, powercap=powercap)
    set_uj(powercap / "intel-rapl:0", 1_000_000 + 30_000_000)  # 30 J
    set_uj(powercap / "intel-rapl:1", 2_000_000 + 10_000_000)  # 10 J
    used = meter.finish(cpu_seconds=1.0)
    assert used.source == "rapl"
    assert used.joules == pytest.approx(40.0 * 1.0 / 4.0)
    assert "2 package(s)" in used.how and "0.250" in used.how


def test_without_rapl_energy_is_estimated_from_cpu_time(tmp_path: Path) -> None:
    used = EnergyMeter(watts_per_core=6.5, powercap=tmp_path / "none").finish(cpu_seconds=2.0)
    assert (used.source, used.joules) == ("estimated", 13.0)
    assert "6.5 W per core" in used.how


def test_this_machine_says_how_it_measures() -> None:
    """On a machine without readable RAPL (this one, as a rule) the worker's figures say `estimated`."""
    used = EnergyMeter(watts_per_core=8.0).finish(cpu_seconds=1.0)
    assert used.source == ("rapl" if package_zones() else "estimated")


def test_gpu_power_is_integrated_over_the_job(tmp_path: Path) -> None:
    """nvidia-smi's power.draw samples, integrated; a stand-in program where no NVIDIA GPU is present
    (the device check runs the real nvidia-smi)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!{sys.executable}\nprint('50.00')\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    power = GpuPower(str(smi), interval=0.05)
    started = time.monotonic()
    power.start()
    deadline = started + 10
    while len(power.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    ended = time.monotonic()
    joules = power.stop(started, ended)
    assert joules == pytest.approx(50.0 * (ended - started), rel=1e-6)


def test_gpu_encoders_are_told_apart() -> None:
    assert all(is_gpu_encoder(e) for e in ("h264_nvenc", "hevc_nvenc", "av1_nvenc", "nvh264enc", "nvv4l2h264enc"))
    assert not any(is_gpu_encoder(e) for e in ("libx264", "h264_vaapi", "x264enc", "libsvtav1", None))


def test_a_gpu_job_without_readable_power_falls_back_and_says_so(tmp_path: Path) -> None:
    meter = EnergyMeter(watts_per_core=8.0, gpu_encoder=True, nvidia_smi=None, powercap=tmp_path / "none")
    used = meter.finish(cpu_seconds=1.0)
    assert used.source == "estimated"
    assert "GPU's power could not be read" in used.how
