"""Wall-clock steps on the master (F2/F8): every in-memory interval runs on the monotonic clock, so a step of
the wall clock, back or forward, changes nothing in upkeep; wall time is only what is stored and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffrtmp.master.ratelimit import RateLimiter
from ffrtmp.protocol import Kind
from tests.test_coordinator import T0, Cluster

M0 = 5_000.0
"""The monotonic clock's reading at T0 (any value: it has nothing to do with the wall clock)."""


class SteppedCluster(Cluster):
    """A cluster whose wall clock is `mono` plus a step the test sets."""

    def __init__(self, tmp_path: Path, **config: object) -> None:
        super().__init__(tmp_path, **config)
        self.mono = M0
        self.step = 0.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now = T0 + (self.mono - M0) + self.step

    def deliver(self, route: bytes, kind: Kind, body: dict[str, object] | None = None) -> None:
        from ffrtmp.protocol import encode

        self.coordinator.handle_batch([(route, encode(kind, body))], self.now, self.mono)

    def tick(self) -> None:
        self.coordinator.tick(self.now, self.mono)


def heartbeat(cluster: SteppedCluster, job_id: str, frames: int) -> None:
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "frames": frames}]})


@pytest.mark.parametrize("step", [-300.0, 300.0, 60.0])
def test_a_wall_clock_step_changes_nothing_in_upkeep(tmp_path: Path, step: float) -> None:
    cluster = SteppedCluster(tmp_path, node_timeout=10.0, stall_timeout=60.0, heartbeat_interval=2.0)
    cluster.hello(b"w1", "alpha", slots=2)
    job_id = cluster.submit(timeout=100)
    cluster.net.take(b"w1")
    for second in range(1, 6):
        cluster.advance(1.0)
        heartbeat(cluster, job_id, frames=second)
        cluster.tick()
    cluster.step = step  # NTP, a resumed VM: the wall clock jumps, the monotonic one does not
    for second in range(6, 40):
        cluster.advance(1.0)
        heartbeat(cluster, job_id, frames=second)
        cluster.tick()
    assert cluster.coordinator.counters.dead_nodes == 0
    assert cluster.coordinator.counters.stalled == 0 and cluster.coordinator.counters.timed_out == 0
    assert cluster.job(job_id)["status"] == "running"
    assert cluster.coordinator.nodes["alpha"].status == "online"
    assert not cluster.net.take(b"w1", Kind.CANCEL)


def test_upkeep_goes_on_after_the_wall_clock_goes_back(tmp_path: Path) -> None:
    """A node that falls silent after a 300 s backward step is still declared dead after the node timeout."""
    cluster = SteppedCluster(tmp_path, node_timeout=10.0)
    cluster.hello(b"w1", "alpha")
    cluster.hello(b"w2", "beta")
    job_id = cluster.submit()
    (first,) = [r for r in (b"w1", b"w2") if cluster.net.take(r, Kind.JOB)]
    cluster.step = -300.0
    other = b"w2" if first == b"w1" else b"w1"
    for _ in range(12):
        cluster.advance(1.0)
        cluster.deliver(other, Kind.HEARTBEAT, {"jobs": []})
        cluster.tick()
    assert cluster.coordinator.counters.dead_nodes == 1
    assert [m.body["job"] for m in cluster.net.take(other, Kind.JOB)] == [job_id]


def test_a_retry_backoff_waits_its_own_length_whatever_the_wall_clock_does(tmp_path: Path) -> None:
    cluster = SteppedCluster(tmp_path, node_timeout=1000.0)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.net.take(b"w1")
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="boom")
    assert cluster.job(job_id)["status"] == "pending"
    cluster.step = -300.0
    for _ in range(60):  # the backoff is a few seconds at most (RETRY_BACKOFF_BASE)
        cluster.advance(1.0)
        cluster.tick()
        if cluster.job(job_id)["status"] != "pending":
            break
    assert cluster.job(job_id)["attempts"] == 2


def test_a_client_keeps_its_rate_after_the_wall_clock_goes_back(tmp_path: Path) -> None:
    cluster = SteppedCluster(tmp_path, rate_limits={"read": (10.0, 10.0)})
    for _ in range(5):
        assert cluster.request("stats")["status"] == 200
    cluster.step = -300.0
    cluster.advance(0.5)
    assert cluster.request("stats")["status"] == 200


def test_buckets_never_go_negative_when_time_goes_back() -> None:
    limiter = RateLimiter({"read": (10.0, 20.0)})
    assert limiter.check("k", "read", 1000.0) is None
    assert limiter.check("k", "read", 700.0) is None, "a clock that went back must not drain the bucket"
    bucket = limiter.buckets[("k", "read")]
    assert 0 <= bucket.tokens <= 20
    for _ in range(30):
        limiter.check("k", "read", 700.0)
    assert bucket.tokens >= 0
    wait = limiter.check("k", "read", 700.0)
    assert wait is not None and wait <= 0.1, "at most one token's time, not the step's"
