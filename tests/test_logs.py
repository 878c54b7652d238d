"""Job logs on the master: capture, cap, retention, and following, with scripted peers and a fixed clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ffrtmp.master.logbook import LogPolicy
from ffrtmp.protocol import Kind, Message
from tests.test_coordinator import T0, Cluster


def log(cluster: Cluster, route: bytes, job_id: str, attempt: int, *texts: str, first_seq: int = 1) -> None:
    lines = [[first_seq + i, cluster.now, "stderr", text] for i, text in enumerate(texts)]
    cluster.deliver(route, Kind.LOG, {"job": job_id, "attempt": attempt, "lines": lines})


def follow(cluster: Cluster, job_id: str, route: bytes = b"follower", **args: Any) -> str:
    cluster.rids += 1
    rid = str(cluster.rids)
    cluster.deliver(route, Kind.REQUEST, {"rid": rid, "op": "logs.follow", "args": {"id": job_id, **args}})
    return rid


def received(cluster: Cluster, route: bytes = b"follower") -> list[Message]:
    return cluster.net.take(route, Kind.PARTIAL) + cluster.net.take(route, Kind.REPLY)


def texts(messages: list[Message]) -> list[str]:
    return [line["line"] for m in messages if m.kind is Kind.PARTIAL for line in m.body["body"]["lines"]]


def test_lines_are_stored_in_order_and_read_back_per_attempt(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one", "two")
    log(cluster, b"w1", job_id, 1, "three", first_seq=3)
    reply = cluster.request("logs", {"id": job_id})["body"]
    assert [line["line"] for line in reply["lines"]] == ["one", "two", "three"]
    assert [line["seq"] for line in reply["lines"]] == [1, 2, 3]
    assert [line["line"] for line in cluster.request("logs", {"id": job_id, "tail": 2})["body"]["lines"]] == [
        "two", "three"]


def test_a_killed_attempts_lines_stay_under_their_attempt(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.hello(b"w2", "beta")
    log(cluster, b"w1", job_id, 1, "first try")
    cluster.now += 11
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.coordinator.tick(cluster.now)  # alpha is dead: attempt 2 goes to beta
    log(cluster, b"w2", job_id, 2, "second try")
    log(cluster, b"w1", job_id, 1, "a late line from the dead attempt", first_seq=2)
    lines = lambda **a: [x["line"] for x in cluster.request("logs", {"id": job_id, **a})["body"]["lines"]]  # noqa
    assert lines() == ["second try"], "the latest attempt by default"
    assert lines(attempt=1) == ["first try"], "the stale late line was ignored"
    assert [(x["attempt"], x["line"]) for x in cluster.request("logs", {"id": job_id, "attempt": "all"})["body"][
        "lines"]] == [(1, "first try"), (2, "second try")]


def test_following_a_pending_job_streams_its_lines_then_ends_with_its_status(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job_id = cluster.submit()
    rid = follow(cluster, job_id)
    assert texts(received(cluster)) == []
    cluster.hello(b"w1", "alpha")
    log(cluster, b"w1", job_id, 1, "frame 1")
    first = received(cluster)
    assert texts(first) == ["frame 1"] and first[0].body["rid"] == rid
    log(cluster, b"w1", job_id, 1, "frame 2", "frame 3", first_seq=2)
    assert texts(received(cluster)) == ["frame 2", "frame 3"]
    cluster.result(b"w1", job_id, 1)
    end = received(cluster)
    assert [m.kind for m in end] == [Kind.REPLY]
    assert end[0].body["body"]["status"] == "completed" and end[0].body["rid"] == rid
    log(cluster, b"w1", job_id, 1, "after the end", first_seq=4)
    assert received(cluster) == []


def test_following_a_finished_job_sends_its_lines_and_the_end_at_once(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "a", "b", "c")
    cluster.result(b"w1", job_id, 1, status="failed", failure="invalid_input", error="bad input")
    messages = received(cluster) or []
    follow(cluster, job_id, tail=2)
    messages = received(cluster)
    assert texts(messages) == ["b", "c"]
    assert messages[-1].kind is Kind.REPLY and messages[-1].body["body"]["status"] == "failed"


def test_following_the_latest_attempt_also_shows_its_retries(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    follow(cluster, job_id)
    log(cluster, b"w1", job_id, 1, "try one")
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="crash")
    cluster.now += 10
    cluster.coordinator.tick(cluster.now)
    log(cluster, b"w1", job_id, 2, "try two")
    messages = received(cluster)
    assert [(x["attempt"], x["line"]) for m in messages if m.kind is Kind.PARTIAL
            for x in m.body["body"]["lines"]] == [(1, "try one"), (2, "try two")]


def test_followers_hear_a_keepalive_every_second_and_are_dropped_when_gone(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job_id = cluster.submit()
    follow(cluster, job_id)
    received(cluster)
    cluster.now += 1.5
    cluster.coordinator.tick(cluster.now)
    keepalive = received(cluster)
    assert len(keepalive) == 1 and keepalive[0].body["body"] == {"lines": [], "status": "pending"}
    cluster.net.gone.add(b"follower")
    cluster.now += 1.5
    cluster.coordinator.tick(cluster.now)
    assert cluster.coordinator.logbook.followers == {}


def test_a_log_past_the_cap_is_cut_with_one_marker_and_counted(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_job_bytes=30))
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "0123456789", "0123456789", "this one no longer fits", "nor this")
    log(cluster, b"w1", job_id, 1, "later", first_seq=5)
    reply = cluster.request("logs", {"id": job_id})["body"]
    lines = [line["line"] for line in reply["lines"]]
    assert lines[:2] == ["0123456789", "0123456789"] and "truncated" in lines[2] and len(lines) == 3
    assert reply["dropped"] == 3


def test_retention_deletes_logs_of_jobs_finished_long_ago_a_little_at_a_time(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(retention=3600.0), node_timeout=1e9)
    cluster.hello(b"w1", "alpha", slots=2)
    old, recent = cluster.submit(), cluster.submit()
    log(cluster, b"w1", old, 1, "old line")
    log(cluster, b"w1", recent, 1, "recent line")
    cluster.result(b"w1", old, 1)
    cluster.now += 3000
    cluster.result(b"w1", recent, 1)
    cluster.now += 1000  # old finished 4000 s ago, recent 1000 s ago
    cluster.coordinator.tick(cluster.now)
    assert cluster.request("logs", {"id": old})["body"]["lines"] == []
    assert [line["line"] for line in cluster.request("logs", {"id": recent})["body"]["lines"]] == ["recent line"]


def test_retention_by_total_size_drops_the_oldest_finished_jobs_first(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_total_bytes=25), node_timeout=1e9)
    cluster.hello(b"w1", "alpha", slots=3)
    jobs = [cluster.submit() for _ in range(3)]
    for index, job_id in enumerate(jobs):
        cluster.now = T0 + index
        log(cluster, b"w1", job_id, 1, "0123456789")  # 11 bytes each
        cluster.result(b"w1", job_id, 1)
    cluster.now += 10
    for _ in range(3):
        cluster.coordinator.tick(cluster.now)
        cluster.now += 0.2
    kept = [bool(cluster.request("logs", {"id": job_id})["body"]["lines"]) for job_id in jobs]
    assert kept == [False, True, True]
    assert cluster.coordinator.logbook.total_bytes == 22
