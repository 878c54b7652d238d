"""Master and worker metrics, /health and /ready: scripted coordinators for the figures, real HTTP for the rest."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.master.metrics import MasterMetrics
from ffrtmp.master.server import STATE_FILE
from ffrtmp.protocol import Kind
from ffrtmp.worker.agent import Agent
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.encoders import Encoder
from ffrtmp.worker.metrics import WorkerCollector, serve_worker_metrics
from tests.conftest import eventually
from tests.inprocess import wait_for_workers
from tests.scrape import (
    NULL_ONLY,
    Families,
    base_of,
    collect,
    free_port,
    get,
    labelsets,
    master_with_metrics,
    scrape,
    value,
)
from tests.test_coordinator import Cluster

RESOURCES = {"cpu_percent": 12.5, "memory_percent": 40.0, "disk_free": 1e9,
             "gpus": [{"index": 0, "utilization": 30.0}, "junk", {"index": 1, "utilization": "n/a"}]}


def families_of(metrics: MasterMetrics) -> Families:
    return collect(metrics.registry)


# ---- the figures, from a scripted coordinator (no sockets, a fixed clock) ---------------------------


@pytest.fixture
def scripted(tmp_path: Path) -> tuple[Cluster, MasterMetrics]:
    cluster = Cluster(tmp_path)
    return cluster, MasterMetrics(cluster.coordinator, cluster.store.reader())


def test_the_spec_series_and_the_job_histograms_follow_a_job(scripted: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = scripted
    cluster.hello(b"w1", "alpha", slots=2, engines=("null",), resources=RESOURCES)
    job_id = cluster.submit(queue="live", priority="high")
    cluster.submit(queue="batch", priority="low", engine="ffmpeg")  # alpha offers no ffmpeg: stays pending
    cluster.now += 3  # waited 3 s before it started
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    running = families_of(metrics)
    assert value(running, "ffrtmp_jobs_running") == 1 and value(running, "ffrtmp_jobs_pending") == 1
    assert value(running, "ffrtmp_nodes_busy") == 1 and value(running, "ffrtmp_nodes_available") == 1
    assert value(running, "ffrtmp_node_running", node="alpha") == 1
    cluster.now += 2
    cluster.result(b"w1", job_id, 1)

    families = families_of(metrics)
    for name, expected in (("ffrtmp_jobs_pending", 1), ("ffrtmp_jobs_running", 0), ("ffrtmp_jobs_completed", 1),
                           ("ffrtmp_jobs_failed", 0), ("ffrtmp_nodes_total", 1), ("ffrtmp_nodes_available", 1),
                           ("ffrtmp_nodes_busy", 0)):
        assert value(families, name) == expected, name
    assert families["ffrtmp_job_duration_seconds"].type == "histogram"
    assert value(families, "ffrtmp_job_duration_seconds_sum", queue="live", engine="null", status="completed") == 2
    assert value(families, "ffrtmp_job_wait_seconds_sum", queue="live", engine="null") == 3
    assert value(families, "ffrtmp_job_wait_seconds_count", queue="live", engine="null") == 1
    assert value(families, "ffrtmp_queue_depth", queue="batch", priority="low") == 1
    assert value(families, "ffrtmp_queue_depth", queue="live", priority="high") == 0, "empty pairs are 0, not absent"
    assert value(families, "ffrtmp_jobs_submitted_total", queue="live", priority="high") == 1
    assert value(families, "ffrtmp_jobs_finished_total", queue="live", status="completed") == 1
    assert value(families, "ffrtmp_messages_total", kind="hello") == 1
    assert value(families, "ffrtmp_messages_total", kind="result") == 1
    commits = value(families, "ffrtmp_store_commit_seconds_count")
    assert commits is not None and commits >= 4, "every batch is a transaction"
    uptime = value(families, "ffrtmp_master_uptime_seconds")
    assert uptime is not None and uptime >= 0


def test_a_retry_is_not_a_second_wait(scripted: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = scripted
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="boom")
    cluster.now += 60  # past the backoff
    cluster.coordinator.tick(cluster.now)
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 2, "at": cluster.now})
    families = families_of(metrics)
    assert value(families, "ffrtmp_retries_total") == 1
    assert value(families, "ffrtmp_attempt_failures_total", failure="encoder_error") == 1
    assert value(families, "ffrtmp_job_wait_seconds_count", queue="default", engine="null") == 1


def test_per_node_gauges_come_from_heartbeats_and_an_offline_node_keeps_only_up(
        scripted: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = scripted
    cluster.hello(b"w1", "alpha", slots=3, resources=RESOURCES)
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [], "resources": {**RESOURCES, "cpu_percent": "bogus",
                                                                      "memory_percent": 55.5}})
    families = families_of(metrics)
    assert value(families, "ffrtmp_node_up", node="alpha") == 1
    assert value(families, "ffrtmp_node_slots", node="alpha") == 3
    assert value(families, "ffrtmp_node_memory_percent", node="alpha") == 55.5
    assert value(families, "ffrtmp_node_cpu_percent", node="alpha") is None, "a non-number is left out"
    assert labelsets(families, "ffrtmp_node_gpu_utilization_percent") == [{"node": "alpha", "gpu": "0"}]

    cluster.now += cluster.config.node_timeout + 1
    cluster.coordinator.tick(cluster.now)
    families = families_of(metrics)
    assert value(families, "ffrtmp_node_up", node="alpha") == 0
    assert value(families, "ffrtmp_dead_nodes_total") == 1
    assert value(families, "ffrtmp_nodes_total") == 0
    for name in ("ffrtmp_node_slots", "ffrtmp_node_memory_percent", "ffrtmp_node_gpu_utilization_percent"):
        assert labelsets(families, name) == [], f"{name}: an offline node's last figures are stale"
    cluster.coordinator.nodes.clear()  # a node the master forgot has no series at all
    assert labelsets(families_of(metrics), "ffrtmp_node_up") == []


def test_a_stalled_attempt_and_stale_messages_are_counted(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stall_timeout=30.0)
    metrics = MasterMetrics(cluster.coordinator, cluster.store.reader())
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 7, "at": cluster.now})  # not its attempt
    for _ in range(5):  # heartbeats keep the node alive, but the job's frames stop moving after the first
        cluster.now += 9
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "frames": 5}]})
        cluster.coordinator.tick(cluster.now)
    families = families_of(metrics)
    assert value(families, "ffrtmp_stalled_attempts_total") == 1
    assert value(families, "ffrtmp_stale_messages_total") == 1
    assert value(families, "ffrtmp_attempt_failures_total", failure="stalled") == 1


def test_rate_limited_is_a_valid_counter_family_before_anything_is_refused(
        scripted: tuple[Cluster, MasterMetrics]) -> None:
    cluster, metrics = scripted
    family = families_of(metrics)["ffrtmp_rate_limited"]
    assert family.type == "counter" and family.samples == []
    cluster.coordinator.counters.rate_limited[("submit", "acme")] = 3
    assert value(families_of(metrics), "ffrtmp_rate_limited_total", kind="submit", tenant="acme") == 3


def test_observer_hooks_never_raise(scripted: tuple[Cluster, MasterMetrics]) -> None:
    _, metrics = scripted
    metrics.jobs_submitted([{"id": "x"}], 0.0)  # no queue: a bug in metrics must not cost the coordinator a batch
    metrics.job_running({}, 0.0)
    metrics.job_finished({"queue": "live"}, 0.0)
    metrics.committed("not a number")  # type: ignore[arg-type]


# ---- /metrics, /health and /ready over real HTTP, on an in-process master --------------------------


def test_ready_waits_for_restore_and_the_first_tick(tmp_path: Path) -> None:
    with master_with_metrics(tmp_path, run=False) as cluster:
        base = base_of(cluster)
        assert get(f"{base}/ready")[0] == 503, "not restored yet"
        assert get(f"{base}/health")[0] == 200, "starting up and the store answers"
        cluster.thread.start()
        eventually(lambda: get(f"{base}/ready")[0] == 200, message="/ready once the loop ticks")
        status, body, content_type = get(f"{base}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert "# TYPE ffrtmp_jobs_pending gauge" in body
        assert get(f"{base}/nothing")[0] == 404


def test_health_fails_when_the_loop_hangs_or_the_store_is_gone(tmp_path: Path) -> None:
    with master_with_metrics(tmp_path) as cluster:
        base, metrics = base_of(cluster), cluster.server.metrics
        assert metrics is not None
        eventually(lambda: get(f"{base}/health")[0] == 200 and get(f"{base}/ready")[0] == 200,
                   message="a healthy master")
        metrics.stale_after = 0.3
        release, real_tick = threading.Event(), cluster.server.coordinator.tick

        def hanging_tick(now: float, mono: float | None = None) -> None:
            release.wait(10)
            real_tick(now, mono)

        cluster.server.coordinator.tick = hanging_tick  # type: ignore[method-assign]
        eventually(lambda: get(f"{base}/health")[0] == 503, message="/health to notice the hung loop")
        assert get(f"{base}/ready")[0] == 503
        cluster.server.coordinator.tick = real_tick  # type: ignore[method-assign]
        release.set()
        eventually(lambda: get(f"{base}/health")[0] == 200, message="/health once the loop ticks again")

        reader = metrics.collector.reader  # the store's file is gone from under the metrics' connection
        with reader.lock:  # type: ignore[attr-defined]
            reader.path = str(tmp_path / "missing.db")  # type: ignore[attr-defined]
            reader.close()
        assert get(f"{base}/health")[0] == 503
        status, body, _ = get(f"{base}/metrics")
        assert status == 200 and "ffrtmp_nodes_total" in body and "ffrtmp_jobs_pending" not in body, \
            "a scrape still answers, without the figures it cannot read"


def test_a_running_master_serves_job_and_node_series(tmp_path: Path) -> None:
    with master_with_metrics(tmp_path) as cluster:
        base = base_of(cluster)
        agent = cluster.add_worker("w1", slots=2, capabilities=NULL_ONLY)
        wait_for_workers(cluster, "w1")
        with cluster.client() as client:
            ids = client.submit_many([{"scenario": "dry", "engine": "null", "queue": "live"}] * 3)
            client.submit("needs-ffmpeg", engine="ffmpeg", queue="batch", priority="low")
            eventually(lambda: all(client.get(i)["status"] == "completed" for i in ids), message="3 null jobs")

        def scraped() -> Families | None:
            families = scrape(base)
            return families if value(families, "ffrtmp_jobs_completed") == 3 else None

        families = eventually(scraped, message="the scrape to show 3 completed jobs")
        assert value(families, "ffrtmp_jobs_pending") == 1
        assert value(families, "ffrtmp_queue_depth", queue="batch", priority="low") == 1
        assert value(families, "ffrtmp_nodes_total") == 1 and value(families, "ffrtmp_node_slots", node="w1") == 2
        assert value(families, "ffrtmp_job_wait_seconds_count", queue="live", engine="null") == 3
        assert value(families, "ffrtmp_job_duration_seconds_count", queue="live", engine="null",
                     status="completed") == 3
        cpu = value(families, "ffrtmp_node_cpu_percent", node="w1")
        assert cpu is not None and 0 <= cpu <= 100

        agent.start_drain(time.monotonic())  # drained: it says BYE and goes offline at once
        agent.wake()
        eventually(lambda: value(scrape(base), "ffrtmp_node_up", node="w1") == 0, message="w1 offline")
        assert value(scrape(base), "ffrtmp_nodes_total") == 0


# ---- the worker's endpoint -------------------------------------------------------------------------


def test_worker_metrics_list_engines_encoders_and_slots(tmp_path: Path) -> None:
    capabilities = Capabilities(engines=["ffmpeg", "null"], ffmpeg="/usr/bin/ffmpeg", gstreamer=None, encoders=[
        Encoder("libx264", "h264", False, available=True, validated=True),
        Encoder("h264_nvenc", "h264", True, available=False, validated=True, reason="no device"),
        Encoder("x264enc", "h264", False, available=True, validated=True, engine="gstreamer"),
    ])
    with master_with_metrics(tmp_path) as cluster:
        agent = cluster.add_worker("w1", slots=3, capabilities=capabilities)
        server = serve_worker_metrics(agent, 0, "127.0.0.1")
        assert server is not None
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            eventually(lambda: get(f"{base}/ready")[0] == 200, message="the worker to be welcomed")
            assert get(f"{base}/health")[0] == 200
            families = scrape(base)
        finally:
            server.shutdown()
            server.server_close()
    assert value(families, "ffrtmp_worker_slots") == 3 and value(families, "ffrtmp_worker_active_jobs") == 0
    assert value(families, "ffrtmp_worker_connected") == 1
    assert value(families, "ffrtmp_worker_info", node="w1") == 1
    encoders = {s.labels["encoder"]: (s.labels, s.value) for s in families["ffrtmp_worker_encoder_available"].samples}
    assert encoders["libx264"] == ({"encoder": "libx264", "codec": "h264", "hardware": "false", "engine": "ffmpeg",
                                    "validated": "true"}, 1)
    assert encoders["h264_nvenc"][1] == 0 and encoders["h264_nvenc"][0]["hardware"] == "true"
    assert encoders["x264enc"][1] == 0, "listed, but its engine is not offered"
    assert value(families, "ffrtmp_worker_engine_available", engine="gstreamer") == 0
    assert value(families, "ffrtmp_worker_engine_available", engine="ffmpeg") == 1
    cpu = value(families, "ffrtmp_worker_cpu_percent")
    assert cpu is not None and 0 <= cpu <= 100


def test_worker_job_gauges_follow_the_progress_snapshots(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from ffrtmp.worker.agent import WorkerOptions
    from ffrtmp.worker.runner import Attempt

    agent = Agent(WorkerOptions(work_dir=tmp_path), NULL_ONLY)
    agent.attempts["j1"] = Attempt(job="j1", attempt=1, spec={}, received_at=0.0,
                                   progress={"fps": 58.5, "speed": 1.9, "progress": 0.25})
    agent.attempts["j2"] = Attempt(job="j2", attempt=1, spec={}, received_at=0.0)  # no progress yet
    registry = CollectorRegistry()
    registry.register(WorkerCollector(agent))
    families = collect(registry)
    assert value(families, "ffrtmp_worker_active_jobs") == 2
    assert value(families, "ffrtmp_worker_job_fps", slot="0") == 58.5
    assert value(families, "ffrtmp_worker_job_speed", slot="0") == 1.9
    assert value(families, "ffrtmp_worker_job_progress", slot="0") == 0.25
    assert labelsets(families, "ffrtmp_worker_job_fps") == [{"slot": "0"}], "no job ids on an open endpoint"
    os.close(agent.wake_read)
    os.close(agent.wake_write)


# ---- real processes: a master and a worker running a real FFmpeg job -----------------------------


@pytest.mark.slow
def test_real_master_and_worker_processes_export_a_running_job(tmp_path: Path, ffmpeg: str) -> None:
    worker_port = free_port()
    with LocalCluster(tmp_path) as cluster:
        cluster.start_master(metrics_port=0)
        master = f"http://127.0.0.1:{json.loads((cluster.master_dir / STATE_FILE).read_text())['metrics_port']}"
        worker = f"http://127.0.0.1:{worker_port}"
        cluster.start_worker("w1", "--metrics-port", str(worker_port))
        cluster.wait_for_nodes(["w1"])
        with cluster.client() as client:
            job_id = client.submit("long", codec="h264", resolution="640x360", fps=30, duration=30, preset="slower",
                                   bitrate="500k")

            def encoding() -> Families | None:
                families = scrape(worker)
                fps, speed = (value(families, name, slot="0") for name in ("ffrtmp_worker_job_fps",
                                                                              "ffrtmp_worker_job_speed"))
                return families if fps and speed else None

            families = eventually(encoding, timeout=60, interval=0.2, message="fps and speed of the running job")
            assert value(families, "ffrtmp_worker_active_jobs") == 1
            assert value(families, "ffrtmp_worker_encoder_available", encoder="libx264", validated="true") == 1
            assert get(f"{worker}/ready")[0] == 200 and get(f"{worker}/health")[0] == 200

            def counted() -> Families | None:
                families = scrape(master)
                return families if value(families, "ffrtmp_node_running", node="w1") == 1 else None

            master_families = eventually(counted, message="the master to count w1's job")
            assert value(master_families, "ffrtmp_jobs_running") == 1
            assert value(master_families, "ffrtmp_node_cpu_percent", node="w1") is not None
            assert get(f"{master}/health")[0] == 200 and get(f"{master}/ready")[0] == 200

            client.cancel(job_id)
            eventually(lambda: value(scrape(worker), "ffrtmp_worker_active_jobs") == 0, timeout=20,
                       message="the canceled job to leave the worker")
            assert labelsets(scrape(worker), "ffrtmp_worker_job_fps") == []
            eventually(lambda: value(scrape(master), "ffrtmp_jobs_canceled") == 1, message="canceled on the master")
