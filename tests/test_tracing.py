"""One trace per job across client, master and worker: in memory in-process, and over OTLP/HTTP."""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from ffrtmp.client import Client  # noqa: E402
from ffrtmp.local import LocalCluster  # noqa: E402
from ffrtmp.master.server import MasterOptions, MasterServer  # noqa: E402
from ffrtmp.security import client_keypair, load_public_key, write_certificates  # noqa: E402
from ffrtmp.tracing import Tracing, endpoint_url  # noqa: E402
from ffrtmp.worker.agent import Agent, WorkerOptions  # noqa: E402
from tests.conftest import eventually  # noqa: E402
from tests.inprocess import shared_capabilities  # noqa: E402


def test_endpoint_forms() -> None:
    assert endpoint_url("localhost:4318") == "http://localhost:4318/v1/traces"
    assert endpoint_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert endpoint_url("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"


def test_client_master_and_worker_spans_form_one_trace(tmp_path: Path, ffmpeg: str) -> None:
    exporter = InMemorySpanExporter()
    write_certificates(tmp_path / "_config", "client")
    server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / "m", metrics=False,
                                        tracing=Tracing("ffrtmp-master", exporter=exporter)))
    master = threading.Thread(target=server.run, daemon=True)
    master.start()
    key = str(tmp_path / "m" / "master.key")
    agent = Agent(WorkerOptions(master=server.url, master_key=load_public_key(key), client_keys=client_keypair(),
                                name="traced", fingerprint="t", work_dir=tmp_path / "work",
                                tracing=Tracing("ffrtmp-worker", exporter=exporter)), shared_capabilities())
    worker = threading.Thread(target=agent.run, daemon=True)
    worker.start()
    app = Tracing("my-app", exporter=exporter)
    try:
        with Client(server.url, master_key=key, timeout=10) as client:
            with app.tracer.start_as_current_span("app.encode-request") as root:
                job_id = client.submit("traced", codec="h264", resolution="160x120", duration=1)
            assert client.wait(job_id, timeout=60)["status"] == "completed"
        spans = eventually(lambda: (s := exporter.get_finished_spans()) and any(x.name == "ffrtmp.job" for x in s)
                           and s, message="the job span to end")
    finally:
        agent.stop_now = True
        agent.wake()
        worker.join(10)
        server.stop_event.set()
        master.join(10)
    by_name = {span.name: span for span in spans}
    trace_id = root.get_span_context().trace_id
    assert {"ffrtmp.job", "ffrtmp.queue", "ffrtmp.attempt 1", "ffrtmp.run"} <= set(by_name)
    assert all(by_name[name].context.trace_id == trace_id for name in ("ffrtmp.job", "ffrtmp.attempt 1",
                                                                         "ffrtmp.run"))
    assert by_name["ffrtmp.job"].parent.span_id == root.get_span_context().span_id
    assert by_name["ffrtmp.attempt 1"].parent.span_id == by_name["ffrtmp.job"].context.span_id
    assert by_name["ffrtmp.run"].parent.span_id == by_name["ffrtmp.attempt 1"].context.span_id
    run = by_name["ffrtmp.run"]
    assert run.resource.attributes["service.name"] == "ffrtmp-worker"
    assert run.attributes["ffrtmp.status"] == "completed" and run.attributes["ffrtmp.metrics.frames"] > 0
    assert by_name["ffrtmp.job"].attributes["ffrtmp.job"] == job_id


class Receiver(http.server.ThreadingHTTPServer):
    """A tiny OTLP/HTTP traces endpoint that keeps every span it gets."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            receiver.spans.append({"service": service, "name": span.name,
                                                   "trace": span.trace_id.hex()})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_master_and_worker_processes_export_one_trace_over_otlp_http(tmp_path: Path, receiver: Receiver,
                                                                     ffmpeg: str) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    with LocalCluster(tmp_path, master_args=["--tracing", "--tracing-endpoint", endpoint], env=env) as cluster:
        cluster.start_master()
        cluster.start_worker("otlp", "--tracing", "--tracing-endpoint", endpoint)
        cluster.wait_for_nodes(["otlp"])
        with cluster.client() as client:
            job_id = client.submit("otlp", codec="h264", resolution="160x120", duration=1)
            assert client.wait(job_id, timeout=60)["status"] == "completed"

        def both_services() -> dict[str, set[str]] | None:
            traces: dict[str, set[str]] = {}
            for span in receiver.spans:
                traces.setdefault(span["trace"], set()).add(f"{span['service']}:{span['name']}")
            for names in traces.values():
                if {"ffrtmp-master:ffrtmp.job", "ffrtmp-worker:ffrtmp.run"} <= names:
                    return traces
            return None

        traces = eventually(both_services, timeout=20, message="master and worker spans in one trace")
    assert any("ffrtmp-master:ffrtmp.attempt 1" in names for names in traces.values())
    assert os.environ.get("OTEL_BSP_SCHEDULE_DELAY") is None
