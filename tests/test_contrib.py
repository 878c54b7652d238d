"""contrib/: the alert rules pass promtool, and every series the rules and the dashboard name is one a running
master or worker really exports (the original's rules used a metric nothing exported)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import _require, eventually
from tests.scrape import NULL_ONLY, base_of, exported_names, master_with_metrics, scrape

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
ALERTS = CONTRIB / "prometheus" / "alerts.yml"
DASHBOARD = CONTRIB / "grafana" / "ffrtmp-dashboard.json"

_NOT_NAMES = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
              "group_right", "inf", "nan"}


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions, keywords, labels
    (inside {...} or a grouping clause), strings, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if match.group(1).lower() not in _NOT_NAMES:
            names.add(match.group(1))
    return names


def test_series_in_reads_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (queue, le) (rate(ffrtmp_job_wait_seconds_bucket{queue=~"live|x"}'
            '[$__rate_interval]))) > 600 and on() ffrtmp_nodes_total == bool 0 or vector(0)')
    assert series_in(expr) == {"ffrtmp_job_wait_seconds_bucket", "ffrtmp_nodes_total"}
    assert series_in("sum(rate(up[5m])) / count(node_cpu_seconds_total) * 1e3") == {"up", "node_cpu_seconds_total"}


def alert_rules(path: Path = ALERTS) -> list[dict[str, str]]:
    """Each rule of alerts.yml as {key: text} for alert, expr, for, severity, summary, description.

    A small reader for the layout of this file (block scalars `>-` included), so the test needs no YAML
    library; promtool (below, and the Prometheus test) parses it for real.
    """
    rules: list[dict[str, str]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)(?:- )?(alert|expr|for|severity|summary|description):\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        indent, key, text = len(match.group(1)), match.group(2), match.group(3)
        if text in (">-", ">", "|", "|-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            text = " ".join(part for part in block if part)
        if key == "alert":
            rules.append({})
        rules[-1][key] = text.strip().strip('"')
    return rules


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    dashboard = json.loads(path.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_promtool_accepts_the_alert_rules_and_the_example_config() -> None:
    promtool = _require(shutil.which("promtool"), "promtool (apt install prometheus)")
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(CONTRIB / "prometheus" / "prometheus.yml")]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


HEALTHY = {  # one master, two workers, work flowing: nothing fires
    'ffrtmp_master_uptime_seconds': "0+60x40",
    'ffrtmp_node_up{node="w1"}': "1x40",
    'ffrtmp_nodes_total': "2x40",
    'ffrtmp_jobs_pending': "3x40",
    'ffrtmp_queue_depth{queue="default",priority="medium"}': "3x40",
    'ffrtmp_jobs_finished_total{queue="default",status="completed"}': "0+20x40",
    'ffrtmp_jobs_finished_total{queue="default",status="failed"}': "0+1x40",
    'ffrtmp_job_wait_seconds_bucket{queue="default",le="1"}': "0+20x40",
    'ffrtmp_job_wait_seconds_bucket{queue="default",le="+Inf"}': "0+20x40",
    'ffrtmp_store_commit_seconds_bucket{le="0.005"}': "0+100x40",
    'ffrtmp_store_commit_seconds_bucket{le="+Inf"}': "0+100x40",
    'ffrtmp_stalled_attempts_total': "0x40",
    'ffrtmp_timed_out_attempts_total': "0x40",
}
TROUBLE = {  # no master scraped, w1 offline, no workers, a growing batch queue, every other alert's cause
    'ffrtmp_node_up{node="w1"}': "1 1 0x38",
    'ffrtmp_nodes_total': "0x40",
    'ffrtmp_jobs_pending': "0+10x40",
    'ffrtmp_queue_depth{queue="batch",priority="low"}': "0+10x40",
    'ffrtmp_jobs_finished_total{queue="default",status="completed"}': "0+8x40",
    'ffrtmp_jobs_finished_total{queue="default",status="failed"}': "0+2x40",
    'ffrtmp_jobs_finished_total{queue="default",status="canceled"}': "0+50x40",
    'ffrtmp_job_wait_seconds_bucket{queue="live",le="600"}': "0x40",
    'ffrtmp_job_wait_seconds_bucket{queue="live",le="900"}': "0+5x40",
    'ffrtmp_job_wait_seconds_bucket{queue="live",le="+Inf"}': "0+5x40",
    'ffrtmp_store_commit_seconds_bucket{le="0.25"}': "0x40",
    'ffrtmp_store_commit_seconds_bucket{le="1"}': "0+100x40",
    'ffrtmp_store_commit_seconds_bucket{le="+Inf"}': "0+100x40",
    'ffrtmp_stalled_attempts_total': "0x20 1x20",
    'ffrtmp_timed_out_attempts_total': "0x20 2x20",
}
FIRES = {"FfrtmpMasterDown": {}, "FfrtmpStoreCommitSlow": {}, "FfrtmpNodeDown": {"node": "w1"},
         "FfrtmpNoWorkers": {}, "FfrtmpQueueBackingUp": {"queue": "batch"}, "FfrtmpJobsWaitingLong": {"queue": "live"},
         "FfrtmpFailureRateHigh": {}, "FfrtmpJobsStalled": {}, "FfrtmpJobsTimedOut": {}}


def test_each_alert_fires_on_its_cause_and_none_on_a_healthy_cluster(tmp_path: Path) -> None:
    """promtool's rule unit tests over synthetic series of our names: the expressions, `for:` and labels.

    The rules are the ones alerts.yml holds, less their annotations (promtool compares rendered annotations
    too, which would only repeat the file here)."""
    promtool = _require(shutil.which("promtool"), "promtool (apt install prometheus)")
    rules = alert_rules()
    assert set(FIRES) == {rule["alert"] for rule in rules}, "every rule has a cause below"
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{"name": "ffrtmp", "rules": [
        {"alert": r["alert"], "expr": r["expr"], "for": r["for"], "labels": {"severity": r["severity"]}}
        for r in rules]}]}))
    severity = {rule["alert"]: rule["severity"] for rule in rules}

    def case(series: dict[str, str], fires: dict[str, dict[str, str]]) -> dict[str, object]:
        return {"interval": "1m", "input_series": [{"series": k, "values": v} for k, v in series.items()],
                "alert_rule_test": [{"eval_time": "30m", "alertname": name, "exp_alerts": (
                    [{"exp_labels": {**fires[name], "severity": severity[name]}}] if name in fires else [])}
                    for name in FIRES]}

    (tmp_path / "test.yml").write_text(json.dumps({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                   "tests": [case(HEALTHY, {}), case(TROUBLE, FIRES)]}))
    done = subprocess.run([promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_cover_the_issue_and_are_complete() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"FfrtmpNodeDown", "FfrtmpQueueBackingUp", "FfrtmpFailureRateHigh", "FfrtmpJobsStalled"} <= names
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "severity", "summary", "description"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["severity"] in ("warning", "critical"), rule


def test_the_dashboard_has_the_panels_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(dashboard_exprs())
    for needed in ("ffrtmp_jobs_pending", "ffrtmp_queue_depth", "histogram_quantile(0.95, sum by (queue, le) "
                   "(rate(ffrtmp_job_wait_seconds_bucket", "ffrtmp_job_duration_seconds_bucket",
                   "ffrtmp_jobs_finished_total", "ffrtmp_nodes_busy", "ffrtmp_node_cpu_percent",
                   "ffrtmp_node_memory_percent", "ffrtmp_store_commit_seconds_bucket"):
        assert needed in exprs, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["schemaVersion"] >= 30


def test_every_series_in_the_rules_and_the_dashboard_is_exported(tmp_path: Path) -> None:
    """Compared with real scrapes of a master that ran jobs and of a worker's endpoint."""
    from ffrtmp.worker.metrics import serve_worker_metrics

    with master_with_metrics(tmp_path) as cluster:
        agent = cluster.add_worker("w1", capabilities=NULL_ONLY)
        worker_http = serve_worker_metrics(agent, 0, "127.0.0.1")
        assert worker_http is not None
        try:
            with cluster.client() as client:
                job_id = client.submit("dry", engine="null")
                eventually(lambda: client.get(job_id)["status"] == "completed", timeout=20, message="a null job")
            master = scrape(base_of(cluster))
            worker = scrape(f"http://127.0.0.1:{worker_http.server_address[1]}")
        finally:
            worker_http.shutdown()
            worker_http.server_close()
    exported = {**exported_names(master), **exported_names(worker)}
    assert "ffrtmp_job_wait_seconds_bucket" in {s.name for s in master["ffrtmp_job_wait_seconds"].samples}

    referenced: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in series_in(rule["expr"]):
            referenced.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_exprs():
        for name in series_in(expr):
            referenced.setdefault(name, set()).add("the dashboard")
    assert len(referenced) > 15
    unknown = {name: sorted(where) for name, where in referenced.items() if name not in exported}
    assert not unknown, f"series referenced but never exported: {unknown}"
