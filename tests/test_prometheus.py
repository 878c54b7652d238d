"""A real Prometheus server (Debian's `prometheus`) scrapes a running master and its workers, and evaluates
contrib/prometheus/alerts.yml against them."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.master.server import STATE_FILE
from tests.conftest import _require, eventually
from tests.scrape import free_port, get
from tests.test_contrib import ALERTS, alert_rules, dashboard_exprs, series_in

StartPrometheus = Callable[[dict[str, list[str]]], str]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """start({job: [host:port, ...]}) runs Prometheus on a free loopback port, scraping every second with the
    contrib alert rules loaded and its storage in tmp_path; returns its base URL once it is ready."""
    binary = _require(shutil.which("prometheus"), "prometheus (apt install prometheus)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, list[str]]) -> str:
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(ALERTS)],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                                     for job, hosts in targets.items()]}
        path = tmp_path / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        with open(tmp_path / "prometheus.log", "wb") as log:
            proc = subprocess.Popen([binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                return get(f"{base}/-/ready", timeout=1)[0] == 200
            return False

        eventually(ready, timeout=30, interval=0.1, message="prometheus to be ready")
        return base

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def api(base: str, path: str, **params: str) -> Any:
    status, body, _ = get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return reply["data"]


def query(base: str, promql: str) -> dict[str, float]:
    """An instant query: {instance: value}."""
    return {r["metric"].get("instance", ""): float(r["value"][1])
            for r in api(base, "query", query=promql)["result"]}


@pytest.mark.slow
def test_prometheus_scrapes_the_master_and_evaluates_the_alert_rules(tmp_path: Path,
                                                                       prometheus: StartPrometheus) -> None:
    worker_ports = [free_port(), free_port()]
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master(metrics_port=0)
        master = f"127.0.0.1:{json.loads((cluster.master_dir / STATE_FILE).read_text())['metrics_port']}"
        for name, port in zip(("w1", "w2"), worker_ports, strict=True):
            cluster.start_worker(name, "--engines", "null", "--metrics-port", str(port))
        cluster.wait_for_nodes(["w1", "w2"])
        with cluster.client() as client:
            ids = client.submit_many([{"scenario": "dry", "engine": "null"}] * 4)
            eventually(lambda: all(client.get(i)["status"] == "completed" for i in ids), timeout=30,
                       message="4 null jobs to complete")

        base = prometheus({"ffrtmp-master": [master],
                           "ffrtmp-workers": [f"127.0.0.1:{port}" for port in worker_ports]})
        eventually(lambda: [t["health"] for t in api(base, "targets")["activeTargets"]] == ["up"] * 3,
                   timeout=30, interval=0.2, message="Prometheus to scrape the master and both workers")
        eventually(lambda: query(base, "ffrtmp_jobs_completed") == {master: 4.0}, timeout=10, interval=0.2,
                   message="Prometheus to have ffrtmp_jobs_completed = 4")
        assert query(base, "ffrtmp_nodes_total") == {master: 2.0}
        assert query(base, "ffrtmp_jobs_pending") == {master: 0.0}
        assert query(base, "sum(ffrtmp_job_duration_seconds_count)") == {"": 4.0}
        assert set(query(base, "ffrtmp_worker_slots")) == {f"127.0.0.1:{port}" for port in worker_ports}

        def settled() -> list[dict[str, Any]] | None:
            """Every rule evaluated since the first scrape, none pending or firing (before the first scrape,
            absent(ffrtmp_master_uptime_seconds) is briefly true)."""
            rules = [r for g in api(base, "rules")["groups"] for r in g["rules"]]
            return rules if all(r["lastEvaluation"] > "2000" and r["state"] == "inactive" for r in rules) else None

        rules = eventually(settled, timeout=20, interval=0.2, message="the alert rules to settle, none firing")
        ours = {rule["alert"]: rule["expr"] for rule in alert_rules()}
        assert {r["name"] for r in rules} == set(ours), "the test's reader of alerts.yml sees every rule"
        for rule in rules:
            assert rule["health"] == "ok", rule
            assert series_in(rule["query"]) == series_in(ours[rule["name"]]), rule["name"]
        for expr in dashboard_exprs():  # every panel's query is valid PromQL (api() asserts success)
            api(base, "query", query=expr.replace("$__rate_interval", "1m"))
