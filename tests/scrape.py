"""Helpers for tests of metrics endpoints: free ports, GETs, parsed scrapes, an in-process master serving them."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.security import write_certificates
from ffrtmp.worker.capabilities import Capabilities
from tests.inprocess import InProcessCluster

Families = dict[str, Metric]
"""A parsed scrape: family name (a counter's without `_total`) → family."""

NULL_ONLY = Capabilities(engines=["null"], ffmpeg=None, gstreamer=None)
"""A worker that runs only `null` jobs: no encoder validation, so it starts at once."""
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created")}


def free_port() -> int:
    """A port nobody listens on now (the OS picks it; the caller binds it right away)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, body, content type) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("Content-Type", "")


def parse(text: str) -> Families:
    return {family.name: family for family in text_string_to_metric_families(text)}


def scrape(base: str) -> Families:
    """GET base/metrics and parse it."""
    status, body, _ = get(f"{base}/metrics")
    assert status == 200, body
    return parse(body)


def collect(registry: CollectorRegistry) -> Families:
    """What a scrape of `registry` would return, without HTTP."""
    return parse(generate_latest(registry).decode())


def value(families: Families, sample: str, **labels: str) -> float | None:
    """The value of the one sample named `sample` whose labels include `labels`, or None."""
    found = [s.value for family in families.values() for s in family.samples
             if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) <= 1, f"{sample}{labels} matches {len(found)} samples"
    return found[0] if found else None


def labelsets(families: Families, sample: str) -> list[dict[str, str]]:
    return [dict(s.labels) for family in families.values() for s in family.samples if s.name == sample]


def exported_names(families: Families) -> dict[str, str]:
    """Every series name a scrape exports (name → type): its samples' names, and the names its families'
    types give them (`_total` of a counter, `_bucket`/`_sum`/`_count` of a histogram), so a labelled family
    with no sample yet (a histogram before its first job) still counts."""
    names: dict[str, str] = {}
    for family in families.values():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
        for sample in family.samples:
            names[sample.name] = family.type
    return names



@contextmanager
def master_with_metrics(root: Path, run: bool = True) -> Iterator[InProcessCluster]:
    """An in-process master serving its metrics on a free loopback port (see `base_of`); `run=False`
    leaves its loop for the test to start (`cluster.thread.start()`)."""
    write_certificates(root / "_config", "client")
    server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=root / "master", metrics=True,
                                        metrics_port=0))
    thread = threading.Thread(target=server.run, name="master", daemon=True)
    cluster = InProcessCluster(root, server, thread)
    if run:
        thread.start()
    try:
        yield cluster
    finally:
        if thread.is_alive():
            cluster.stop()
        else:
            server.close()


def base_of(cluster: InProcessCluster) -> str:
    """The base URL of an in-process master's metrics endpoint."""
    assert cluster.server.http is not None
    return f"http://127.0.0.1:{cluster.server.http.server_address[1]}"
