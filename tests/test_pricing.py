"""Master pricing (a completed job's `cost` and `currency`) and the quality, energy and cost series, through a
real coordinator and store fed scripted RESULTs, plus a real FFmpeg job and the master's flags."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.master.metrics import MasterMetrics
from ffrtmp.master.pricing import Pricing
from ffrtmp.master.quality_metrics import MAX_VALUES
from ffrtmp.protocol import Kind
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster
from tests.scrape import collect, labelsets, value
from tests.test_coordinator import Cluster

WORKER = {"encoder": "libx264", "fps": 120.0, "psnr_db": 38.5, "ssim": 0.97, "vmaf": 91.0,
          "cpu_seconds": 7200.0, "energy_joules": 7.2e6, "energy_source": "estimated"}
"""Two CPU-hours and two kWh: the cost is easy to check by eye."""


def test_cost_is_energy_at_the_kwh_price_plus_cpu_time_at_the_hour_price() -> None:
    both = Pricing.parse("0.30", "0.05", "eur").apply(WORKER, "completed")
    assert both["cost"] == pytest.approx(2 * 0.30 + 2 * 0.05) and both["currency"] == "EUR"
    assert both["cost_basis"] == "energy+cpu"
    energy = Pricing.parse("0.30", None, "USD").apply(WORKER, "completed")
    assert (energy["cost"], energy["currency"], energy["cost_basis"]) == (pytest.approx(0.6), "USD", "energy")
    cpu = Pricing.parse(None, 0.05, None).apply({"cpu_seconds": 1800}, "completed")
    assert (cpu["cost"], cpu["currency"], cpu["cost_basis"]) == (pytest.approx(0.025), "EUR", "cpu")
    assert "cost" not in Pricing.parse("0.30", None, None).apply({"cpu_seconds": 60}, "completed"), \
        "only what has a price and a figure counts"
    assert "cost" not in Pricing().apply(WORKER, "completed"), "no prices: no cost"


def test_the_master_owns_cost_and_keeps_only_numbers_under_the_reported_figures() -> None:
    sent = {**WORKER, "cost": 0.0, "currency": "XXX", "cost_basis": "free", "vmaf": "great", "fps": math.inf,
            "speed": True, "bitrate": 10**400, "energy_source": "rapl"}
    stored = Pricing.parse(None, "1", None).apply(sent, "completed")
    assert stored["cost"] == pytest.approx(2.0) and stored["currency"] == "EUR" and stored["cost_basis"] == "cpu"
    assert not {"vmaf", "fps", "speed", "bitrate"} & stored.keys(), stored
    assert stored["energy_source"] == "rapl" and stored["psnr_db"] == 38.5, "everything else as sent"
    failed = Pricing.parse("1", "1", None).apply(sent, "failed")
    assert not {"cost", "currency", "cost_basis"} & failed.keys(), "only a completed job is priced"
    negative = Pricing.parse("1", "1", None).apply({"cpu_seconds": -5, "energy_joules": -1}, "completed")
    assert "cost" not in negative


@pytest.mark.parametrize(("args", "field"), [
    (("abc", None, None), "energy-price"), (("-1", None, None), "energy-price"), (("inf", None, None), "energy-price"),
    ((None, "nan", None), "cpu-hour-price"), ((None, "1e9", None), "cpu-hour-price"),
    ((None, None, "euro"), "currency"), ((None, None, "E1R"), "currency"),
])
def test_bad_prices_are_refused_naming_the_flag(args: tuple[Any, Any, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Pricing.parse(*args)
    assert caught.value.field == field


def test_the_master_command_refuses_a_bad_price_before_starting(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "master", "--data-dir", str(tmp_path), "--api-port", "0",
                           "--cpu-hour-price", "-3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cpu-hour-price" in done.stderr, done.stderr
    assert not (tmp_path / "master.db").exists(), "nothing was started"


# ---- through the coordinator: stored metrics and the series -----------------------------------------


@pytest.fixture
def priced(tmp_path: Path) -> tuple[Cluster, MasterMetrics]:
    cluster = Cluster(tmp_path, pricing=Pricing.parse("0.30", "0.05", "EUR"))
    return cluster, MasterMetrics(cluster.coordinator, cluster.store.reader())


def run_job(cluster: Cluster, metrics: dict[str, Any], scenario: str = "720p30-h264", **job: Any) -> str:
    job_id = cluster.submit(scenario=scenario, **job)
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cluster.now += 10
    cluster.result(b"w1", job_id, 1, metrics=metrics)
    return job_id


def test_a_completed_job_is_stored_with_its_cost(priced: tuple[Cluster, MasterMetrics]) -> None:
    cluster, _ = priced
    cluster.hello(b"w1", "alpha")
    job_id = run_job(cluster, {**WORKER, "cost": 0.0})
    job = cluster.job(job_id)
    assert job["status"] == "completed"
    assert job["metrics"]["cost"] == pytest.approx(0.7) and job["metrics"]["currency"] == "EUR"
    assert job["metrics"]["vmaf"] == 91.0


def test_the_quality_energy_and_cost_series_follow_a_completed_job(priced: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = priced
    cluster.hello(b"w1", "alpha")
    run_job(cluster, WORKER)
    families = collect(metrics.registry)
    encode = {"scenario": "720p30-h264", "encoder": "libx264"}
    assert families["ffrtmp_job_vmaf"].type == "histogram"
    assert value(families, "ffrtmp_job_vmaf_sum", **encode) == 91.0
    assert value(families, "ffrtmp_job_psnr_db_count", **encode) == 1
    assert value(families, "ffrtmp_job_ssim_sum", **encode) == 0.97
    assert value(families, "ffrtmp_job_energy_joules_total", tenant="default") == 7.2e6
    assert value(families, "ffrtmp_job_cpu_seconds_total", tenant="default") == 7200.0
    assert value(families, "ffrtmp_job_cost_total", tenant="default", currency="EUR") == pytest.approx(0.7)
    # 7.2 MJ over the 10 s run = 720 kW on average: VMAF 91 per 720,000 W
    assert value(families, "ffrtmp_job_vmaf_per_watt_sum", **encode) == pytest.approx(91 / 720_000)
    run_job(cluster, {"encoder": "libx264"})  # measured nothing: counted nowhere
    after = collect(metrics.registry)
    assert value(after, "ffrtmp_job_vmaf_count", **encode) == 1


def test_label_values_are_bounded_whatever_is_submitted(priced: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = priced
    cluster.hello(b"w1", "alpha")
    for n in range(MAX_VALUES + 10):
        run_job(cluster, {"encoder": f"enc{n}", "vmaf": 50.0}, scenario=f"s{n}")
    series = labelsets(collect(metrics.registry), "ffrtmp_job_vmaf_count")
    assert len(series) == MAX_VALUES + 1
    assert {"scenario": "other", "encoder": "other"} in series


# ---- a real FFmpeg job --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_job_is_priced_from_what_its_worker_measured(tmp_path: Path, ffmpeg: str) -> None:
    pricing = Pricing.parse("0.30", "0.05", "EUR")
    with inprocess_cluster(tmp_path, pricing=pricing) as cluster:
        cluster.add_worker("w1")
        with cluster.client() as client:
            job_id = client.submit("tiny", codec="h264", resolution="160x120", fps=10, duration=1, bitrate="200k")
            eventually(lambda: client.get(job_id)["status"] in ("completed", "failed"), timeout=60,
                       message="a tiny FFmpeg job")
            job = client.get(job_id)
    assert job["status"] == "completed", job.get("error")
    metrics = job["metrics"]
    # Exactly the cost of the figures the worker measured (which this worker reports depends on its version).
    assert metrics.get("cost") == (pricing.apply(metrics, "completed").get("cost"))
    if "cpu_seconds" in metrics or "energy_joules" in metrics:
        assert metrics["currency"] == "EUR" and metrics["cost"] > 0
