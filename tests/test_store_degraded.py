"""A full store (F4, docs/design.md) in the unit tier: the coordinator on a real SQLite file whose growth is capped
with `PRAGMA max_page_count`, so writes fail with a real SQLITE_FULL; a fixed clock drives the retries."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from ffrtmp.jobspec import validate_submission
from ffrtmp.master.store import Store
from ffrtmp.master.store.health import WriteFault
from ffrtmp.protocol import Kind, encode
from tests.test_coordinator import Cluster

BIG = {f"pad{i}": "x" * 250 for i in range(8)}
"""Labels that make each job take real space."""


def cap(cluster: Cluster) -> None:
    """From now on the database file cannot grow (a disk that just filled up)."""
    pages = cluster.store.conn.execute("PRAGMA page_count").fetchone()[0]
    cluster.store.conn.execute(f"PRAGMA max_page_count = {pages}")


def uncap(cluster: Cluster) -> None:
    cluster.store.conn.execute("PRAGMA max_page_count = 1073741823")


def big_submit(cluster: Cluster, count: int = 300) -> dict[str, object]:
    return cluster.request("submit", {"jobs": [{"scenario": "big", "engine": "null", "labels": BIG}] * count})


def stored_jobs(cluster: Cluster) -> int:
    return int(cluster.store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def recover(cluster: Cluster) -> None:
    """Space is back: once the backoff has passed, the next tick finds the store writable."""
    uncap(cluster)
    cluster.now = cluster.coordinator.store_health.retry_at + 0.01
    cluster.coordinator.tick(cluster.now)
    assert not cluster.coordinator.store_health.degraded


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, store_min_free=0)


def test_a_submit_that_fills_the_store_is_rolled_back_and_answered_store_full(cluster: Cluster,
                                                                              tmp_path: Path) -> None:
    before = stored_jobs(cluster)
    cap(cluster)
    reply = big_submit(cluster)
    assert reply["status"] == 507
    assert str(reply["error"]).startswith(f"store full: {tmp_path} has ") and "retry after" in str(reply["error"])
    assert stored_jobs(cluster) == before
    assert cluster.coordinator.store_health.degraded


def test_degraded_the_master_refuses_writes_serves_reads_and_keeps_nodes(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cap(cluster)
    assert big_submit(cluster)["status"] == 507
    # Before the backoff has passed, even a small write is refused without trying; reads are served.
    assert cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]})["status"] == 507
    assert cluster.request("cancel", {"id": job_id})["status"] == 507
    assert cluster.job(job_id)["status"] == "running"
    assert cluster.request("stats")["status"] == 200
    cluster.net.sent.clear()
    for second in range(30):  # 30 s of heartbeats, three node timeouts: the node stays, its job stays running
        cluster.now += 1
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "progress": second / 60}]})
        cluster.coordinator.tick(cluster.now)
        assert big_submit(cluster)["status"] == 507  # each retry of the full store fails again
    assert len(cluster.net.take(b"w1", Kind.HEARTBEAT)) == 30  # answered, so the worker knows we are there
    assert cluster.net.take(b"w1", Kind.CANCEL) == []
    assert cluster.coordinator.nodes["alpha"].status == "online"
    recover(cluster)
    # Heard from all along: the first upkeep after the spell finds the node alive and its job still running.
    assert cluster.coordinator.nodes["alpha"].status == "online"
    assert cluster.job(job_id)["status"] == "running"
    assert cluster.submit()


def test_a_result_in_the_failed_batch_is_not_acknowledged_and_counts_once_when_sent_again(
        cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cluster.net.sent.clear()
    cap(cluster)
    result = {"job": job_id, "attempt": 1, "status": "completed", "at": cluster.now}
    submit = {"rid": "big", "op": "submit", "args": {"jobs": [{"scenario": "b", "engine": "null", "labels": BIG}]
                                                      * 300}}
    cluster.coordinator.handle_batch([(b"w1", encode(Kind.RESULT, result)),
                                      (b"client", encode(Kind.REQUEST, submit))], cluster.now)
    assert cluster.net.take(b"w1", Kind.ACK) == []
    assert [m.body["status"] for m in cluster.net.take(b"client", Kind.REPLY)] == [507]
    assert job_id in cluster.coordinator.nodes["alpha"].attempts  # its slot is the job's again, as stored
    assert cluster.job(job_id)["status"] == "running"
    recover(cluster)
    cluster.deliver(b"w1", Kind.RESULT, result)  # the worker resends what was not acknowledged
    assert [m.body for m in cluster.net.take(b"w1", Kind.ACK)] == [{"job": job_id, "attempt": 1}]
    job = cluster.job(job_id)
    assert job["status"] == "completed"
    assert sum(1 for event in job["history"] if event["status"] == "completed") == 1


def test_a_dispatch_in_the_failed_batch_is_never_sent_and_the_job_is_placed_later(cluster: Cluster) -> None:
    job_id = cluster.submit()
    cap(cluster)
    hello = {"name": "alpha", "fingerprint": "fp", "version": "test", "slots": 1, "engines": ["null"],
             "running": []}
    submit = {"rid": "big", "op": "submit", "args": {"jobs": [{"scenario": "b", "engine": "null", "labels": BIG}]
                                                      * 300}}
    # The batch in which the worker joins and would get the job fails as a whole.
    cluster.coordinator.handle_batch([(b"w1", encode(Kind.HELLO, hello)),
                                      (b"client", encode(Kind.REQUEST, submit))], cluster.now)
    assert cluster.net.take(b"w1", Kind.JOB) == [] and cluster.net.take(b"w1", Kind.WELCOME) == []
    assert cluster.coordinator.nodes["alpha"].attempts == {}
    recover(cluster)
    assert [m.kind for m in cluster.hello(b"w1", "alpha")] == [Kind.WELCOME]
    jobs = cluster.net.take(b"w1", Kind.JOB)
    assert [m.body["job"] for m in jobs] == [job_id] and jobs[0].body["attempt"] == 1


def test_low_free_space_refuses_writes_before_sqlite_fails_and_retries_with_backoff(cluster: Cluster,
                                                                                     tmp_path: Path) -> None:
    health = cluster.coordinator.store_health
    health.min_free = 1 << 62  # more than any disk: the reserve is gone
    cluster.coordinator.tick(cluster.now)
    assert health.degraded and health.fault is not None and f"store full: {tmp_path} has" in health.fault
    reply = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]})
    assert reply["status"] == 507 and "MiB in reserve" in str(reply["error"])
    first = health.retry_at - cluster.now
    cluster.now = health.retry_at + 0.01
    cluster.coordinator.tick(cluster.now)  # still no space: the next try waits twice as long
    assert health.degraded and health.retry_at - cluster.now == pytest.approx(2 * first)
    health.min_free = 0
    cluster.now = health.retry_at - 0.5
    cluster.coordinator.tick(cluster.now)
    assert health.degraded  # not before the backoff has passed
    cluster.now = health.retry_at + 0.01
    cluster.coordinator.tick(cluster.now)
    assert not health.degraded
    assert cluster.submit()


def test_a_write_fault_caught_inside_a_transaction_still_fails_the_whole_batch(tmp_path: Path) -> None:
    """SQLite rolls back by itself on SQLITE_FULL; code that caught the error must not commit what followed."""
    store = Store(tmp_path / "master.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(WriteFault), store.transaction():
        with contextlib.suppress(sqlite3.OperationalError):
            store.insert_jobs([validate_submission({"scenario": "b", "engine": "null", "labels": BIG})] * 300,
                              1.0, 3)
        assert not store.conn.in_transaction  # SQLite ended it
    assert store.status_counts() == {}


def test_a_wall_clock_step_back_does_not_postpone_the_retry_of_a_full_store(cluster: Cluster) -> None:
    cap(cluster)
    assert big_submit(cluster)["status"] == 507
    retry_at = cluster.coordinator.store_health.retry_at
    uncap(cluster)
    # The wall clock steps back 300 s; the monotonic clock goes on past the backoff.
    cluster.coordinator.tick(cluster.now - 300, retry_at + 0.01)
    assert not cluster.coordinator.store_health.degraded


def test_a_backward_step_of_the_wall_clock_does_not_stop_the_free_space_check(cluster: Cluster) -> None:
    # Found by scripts/bench/chaos.py: after the master's clock stepped back 300 s, a full disk went unnoticed
    # (no "store full") because the once-a-second look at the free space compared wall-clock instants.
    health = cluster.coordinator.store_health
    mono = 1000.0
    cluster.coordinator.tick(cluster.now, mono)
    cluster.now -= 300  # the wall clock steps back; monotonic time goes on
    health.min_free = 1 << 62  # the disk fills up
    mono += 1.5
    cluster.coordinator.tick(cluster.now, mono)
    assert health.degraded
    health.min_free = 0
    mono = health.retry_at + 0.01  # the backoff counts in monotonic time too
    cluster.coordinator.tick(cluster.now, mono)
    assert not health.degraded


def test_a_node_heard_from_through_a_long_full_disk_spell_is_not_declared_dead(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cap(cluster)
    assert big_submit(cluster)["status"] == 507
    for second in range(60):  # the backoff grows past the node timeout: most heartbeats take the degraded path
        cluster.now += 1
        cluster.coordinator.tick(cluster.now)  # a retry's upkeep comes before that second's heartbeat
        big_submit(cluster)  # and the disk is still full, so the backoff keeps growing
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "progress": second / 200}]})
        assert cluster.coordinator.nodes["alpha"].status == "online", f"declared dead after {second + 1} s"
    recover(cluster)
    assert cluster.coordinator.nodes["alpha"].status == "online"
    assert cluster.job(job_id)["status"] == "running"
