"""docs/prometheus/alerts.yml and docs/grafana/ffrtmp-quality.json: promtool accepts the rules and fires each
on its cause, and every series they name is one a running master really exports (read by the helpers of
tests/test_contrib.py, which checks contrib/ the same way)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import _require, eventually
from tests.scrape import NULL_ONLY, base_of, exported_names, master_with_metrics, scrape
from tests.test_contrib import alert_rules, dashboard_exprs, series_in

DOCS = Path(__file__).resolve().parent.parent / "docs"
ALERTS = DOCS / "prometheus" / "alerts.yml"
DASHBOARD = DOCS / "grafana" / "ffrtmp-quality.json"
ENCODE = '{scenario="720p30-h264",encoder="libx264"}'


def promtool() -> str:
    return _require(shutil.which("promtool"), "promtool (apt install prometheus)")


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def per_minute(step: float) -> str:
    """A counter growing by `step` every minute for 80 minutes (promtool's expanding notation)."""
    return f"0+{step:g}x80"


HEALTHY = {  # VMAF 90, PSNR 40 dB, 0.6 EUR an hour, 1 kW
    f"ffrtmp_job_vmaf_count{ENCODE}": per_minute(10), f"ffrtmp_job_vmaf_sum{ENCODE}": per_minute(900),
    f"ffrtmp_job_psnr_db_count{ENCODE}": per_minute(10), f"ffrtmp_job_psnr_db_sum{ENCODE}": per_minute(400),
    'ffrtmp_job_cost_total{tenant="acme",currency="EUR"}': per_minute(0.01),
    'ffrtmp_job_energy_joules_total{tenant="acme"}': per_minute(60_000),
}
TROUBLE = {  # VMAF 70, PSNR 25 dB, 60 EUR an hour, 3 kW
    f"ffrtmp_job_vmaf_count{ENCODE}": per_minute(10), f"ffrtmp_job_vmaf_sum{ENCODE}": per_minute(700),
    f"ffrtmp_job_psnr_db_count{ENCODE}": per_minute(10), f"ffrtmp_job_psnr_db_sum{ENCODE}": per_minute(250),
    'ffrtmp_job_cost_total{tenant="acme",currency="EUR"}': per_minute(1),
    'ffrtmp_job_energy_joules_total{tenant="acme"}': per_minute(180_000),
}
FIRES = {"FfrtmpVmafLow": {"scenario": "720p30-h264", "encoder": "libx264"},
         "FfrtmpPsnrLow": {"scenario": "720p30-h264", "encoder": "libx264"},
         "FfrtmpTenantCostHigh": {"tenant": "acme", "currency": "EUR"}, "FfrtmpEncodingPowerHigh": {}}


def test_each_rule_fires_on_its_cause_and_none_on_healthy_encodes(tmp_path: Path) -> None:
    rules = alert_rules(ALERTS)
    assert {rule["alert"] for rule in rules} == set(FIRES)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "severity", "summary", "description"}, rule
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{"name": "quality", "rules": [
        {"alert": r["alert"], "expr": r["expr"], "for": r["for"], "labels": {"severity": r["severity"]}}
        for r in rules]}]}))

    def case(series: dict[str, str], fires: dict[str, dict[str, str]]) -> dict[str, object]:
        return {"interval": "1m", "input_series": [{"series": k, "values": v} for k, v in series.items()],
                "alert_rule_test": [{"eval_time": "75m", "alertname": name, "exp_alerts": (
                    [{"exp_labels": {**fires[name], "severity": "warning"}}] if name in fires else [])}
                    for name in FIRES]}

    (tmp_path / "test.yml").write_text(json.dumps({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                   "tests": [case(HEALTHY, {}), case(TROUBLE, FIRES)]}))
    done = subprocess.run([promtool(), "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_quality_by_encoder_cost_by_tenant_and_energy() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(DASHBOARD)
    joined = " ".join(exprs)
    for needed in ("sum by (encoder) (rate(ffrtmp_job_vmaf_sum", "ffrtmp_job_psnr_db_sum", "ffrtmp_job_ssim_sum",
                   "ffrtmp_job_vmaf_per_watt_sum", "sum by (tenant, currency) (increase(ffrtmp_job_cost_total",
                   "ffrtmp_job_energy_joules_total", "ffrtmp_job_cpu_seconds_total"):
        assert needed in joined, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "ffrtmp-quality" and dashboard["schemaVersion"] >= 30
    assert {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"} == \
        {"Quality by encoder", "Cost by tenant", "Energy"}


@pytest.mark.slow
def test_every_series_the_rules_and_the_dashboard_name_is_exported(tmp_path: Path) -> None:
    with master_with_metrics(tmp_path) as cluster:
        cluster.add_worker("w1", capabilities=NULL_ONLY)
        with cluster.client() as client:
            job_id = client.submit("dry", engine="null")
            eventually(lambda: client.get(job_id)["status"] == "completed", timeout=20, message="a null job")
        exported = exported_names(scrape(base_of(cluster)))
    referenced = {name for rule in alert_rules(ALERTS) for name in series_in(rule["expr"])}
    referenced |= {name for expr in dashboard_exprs(DASHBOARD) for name in series_in(expr)}
    assert len(referenced) >= 10, referenced
    assert not referenced - exported.keys(), f"named but never exported: {sorted(referenced - exported.keys())}"
    assert exported["ffrtmp_job_vmaf_bucket"] == "histogram" and exported["ffrtmp_job_cost_total"] == "counter"
