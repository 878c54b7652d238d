"""Prefetch: a worker holds jobs beyond its free slots. The master's side on a fixed clock with scripted workers
(accounting, placement, death, drain, cancel, stall clocks), and the agent's queue on pinned clocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ffrtmp.protocol import Kind, encode
from ffrtmp.worker.agent import Agent
from ffrtmp.worker.runner import Attempt, Event
from tests.test_coordinator import T0, Cluster
from tests.test_worker_stop import Clock, clocks, make_agent, welcome  # noqa: F401 (clocks: a fixture)

# ---- the master ---------------------------------------------------------------------------------------


def jobs_sent(cluster: Cluster, route: bytes) -> list[str]:
    return [m.body["job"] for m in cluster.net.take(route, Kind.JOB)]


def node(cluster: Cluster, name: str) -> dict[str, Any]:
    reply = cluster.request("nodes.list")
    return next(n for n in reply["body"]["nodes"] if n["name"] == name)


def test_a_prefetching_worker_gets_one_more_job_than_its_slots_and_it_is_shown_queued(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    ids = [cluster.submit() for _ in range(4)]
    cluster.hello(b"w1", "alpha", slots=2, prefetch=1)
    assert jobs_sent(cluster, b"w1") == ids[:3]
    shown = node(cluster, "alpha")
    assert (shown["running"], shown["queued"], shown["slots"]) == (2, 1, 2)
    held = cluster.job(ids[2])
    assert held["status"] == "assigned" and held["node"] == "alpha"
    waiting = cluster.job(ids[3])
    assert waiting["status"] == "pending" and waiting["node"] is None
    stats = cluster.request("stats")["body"]["nodes"]
    assert (stats["busy_slots"], stats["queued"]) == (2, 1)
    cluster.result(b"w1", ids[0], 1)  # one ends: the held one runs now, and the last one is prefetched
    assert jobs_sent(cluster, b"w1") == [ids[3]]
    assert cluster.coordinator.nodes["alpha"].queued == 1


def test_without_prefetch_a_worker_gets_only_its_slots(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    ids = [cluster.submit() for _ in range(3)]
    cluster.hello(b"w1", "alpha", slots=2, prefetch=0)
    assert jobs_sent(cluster, b"w1") == ids[:2]
    assert node(cluster, "alpha")["queued"] == 0


def test_a_free_slot_anywhere_beats_a_prefetch_queue(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    cluster.hello(b"w2", "beta", slots=1, prefetch=1)
    first = cluster.submit()
    second = cluster.submit()
    assert (jobs_sent(cluster, b"w1"), jobs_sent(cluster, b"w2")) == ([first], [second])
    third = cluster.submit()
    fourth = cluster.submit()
    assert sorted(jobs_sent(cluster, b"w1") + jobs_sent(cluster, b"w2")) == sorted([third, fourth])
    assert cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]})["status"] == 200
    assert not cluster.net.take(b"w1", Kind.JOB) and not cluster.net.take(b"w2", Kind.JOB), "both are full"


def test_a_retried_job_takes_a_free_slot_on_the_node_it_failed_on_over_another_nodes_queue(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    failing = cluster.submit()
    cluster.hello(b"w2", "beta", slots=1, prefetch=1)
    busy = cluster.submit()
    assert jobs_sent(cluster, b"w2") == [busy]
    cluster.result(b"w1", failing, 1, status="failed", failure="encoder_error", error="x")
    cluster.now += 60
    cluster.coordinator.tick(cluster.now)
    assert jobs_sent(cluster, b"w1") == [failing], "it runs now on alpha rather than waiting behind beta's job"


def test_a_worker_that_dies_holding_a_prefetched_job_loses_it_like_a_running_one(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    running, held = cluster.submit(), cluster.submit()
    assert jobs_sent(cluster, b"w1") == [running, held]
    cluster.hello(b"w2", "beta", slots=2, prefetch=0)
    cluster.now += 5
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.now += 6  # alpha silent past the node timeout
    cluster.coordinator.tick(cluster.now)
    assert sorted((m.body["job"], m.body["attempt"]) for m in cluster.net.take(b"w2", Kind.JOB)) == \
        sorted([(running, 2), (held, 2)])
    assert cluster.coordinator.nodes["alpha"].attempts == {}


def test_a_prefetched_job_handed_back_on_drain_is_dispatched_elsewhere_without_using_a_retry(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, max_retries=0)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    running, held = cluster.submit(), cluster.submit()
    assert jobs_sent(cluster, b"w1") == [running, held]
    cluster.hello(b"w2", "beta", slots=1, prefetch=0)
    # What a draining agent sends (see hand_back_held): a heartbeat saying so, then the held job refused.
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": running, "attempt": 1, "frames": 1}],
                                            "draining": True})
    cluster.result(b"w1", held, 1, status="failed", failure="worker_lost", refused=True,
                   error="the worker is draining (a prefetched job, not started)")
    assert cluster.store.get_node("alpha")["status"] == "draining"
    cluster.now += 2  # the refusal delay
    cluster.coordinator.tick(cluster.now)
    assert [(m.body["job"], m.body["attempt"]) for m in cluster.net.take(b"w2", Kind.JOB)] == [(held, 2)]
    assert not cluster.net.take(b"w1", Kind.JOB), "a draining node gets nothing new"
    assert cluster.job(held)["status"] == "assigned", "max_retries 0, yet the hand-back cost no retry"


def test_canceling_a_prefetched_job_tells_its_worker_and_frees_its_room(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    running, held = cluster.submit(), cluster.submit()
    waiting = cluster.submit()
    assert jobs_sent(cluster, b"w1") == [running, held]
    assert cluster.request("cancel", {"id": held})["body"]["changed"] is True
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": held, "attempt": 1}]
    assert cluster.job(held)["status"] == "canceled"
    cluster.result(b"w1", held, 1, status="canceled", failure="canceled", error="canceled by the master")
    assert jobs_sent(cluster, b"w1") == [waiting], "its room in the queue went to the next job"
    assert cluster.job(held)["status"] == "canceled"


def test_a_held_job_does_not_stall_and_its_clocks_start_when_it_starts(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stall_timeout=60.0, node_timeout=1000.0)
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1)
    running, held = cluster.submit(), cluster.submit()
    for second in range(10, 200, 10):  # the running one progresses; the held one waits, reported queued
        cluster.now = T0 + second
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": running, "attempt": 1, "frames": second},
                                                         {"job": held, "attempt": 1, "queued": True}]})
        cluster.coordinator.tick(cluster.now)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "waiting in the queue is not a stall"
    assert cluster.job(held)["status"] == "assigned"
    cluster.result(b"w1", running, 1)
    cluster.deliver(b"w1", Kind.STARTED, {"job": held, "attempt": 1, "at": cluster.now})
    assert cluster.job(held)["status"] == "running"
    cluster.now += 59
    cluster.coordinator.tick(cluster.now)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "its stall clock started when it started"
    cluster.now += 2
    cluster.coordinator.tick(cluster.now)
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": held, "attempt": 1}]


def held_behind_a_long_job(cluster: Cluster, **alpha: Any) -> tuple[str, str, str]:
    """alpha (1 slot, prefetch 1) runs a long job and holds another; beta runs a job of its own."""
    cluster.hello(b"w1", "alpha", slots=1, prefetch=1, **alpha)
    cluster.hello(b"w2", "beta", slots=1, prefetch=0, recall=True)
    long, other, held = cluster.submit(), cluster.submit(), cluster.submit()
    assert (jobs_sent(cluster, b"w1"), jobs_sent(cluster, b"w2")) == ([long, held], [other])
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": long, "attempt": 1, "frames": 1},
                                                     {"job": held, "attempt": 1, "queued": True}]})
    return long, other, held


def test_a_job_held_behind_a_long_one_is_recalled_when_another_node_frees_a_slot(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, max_retries=0)
    long, other, held = held_behind_a_long_job(cluster, recall=True)
    cluster.now += 0.5
    cluster.result(b"w2", other, 1)  # beta is idle now; the held job has waited only half a second
    cluster.coordinator.tick(cluster.now)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "a job about to start is left alone"
    cluster.now += 1.0
    cluster.coordinator.tick(cluster.now)
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": held, "attempt": 1, "recall": True}]
    cluster.coordinator.tick(cluster.now + 0.5)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "asked once"
    assert cluster.coordinator.counters.recalled == 1
    # What the agent answers (see on_cancel): refused, recalled; the job goes to beta at once, no retry used.
    cluster.result(b"w1", held, 1, status="failed", failure="worker_lost", refused=True, recalled=True,
                   error="recalled by the master for a worker with a free slot (prefetched, not started)")
    assert [(m.body["job"], m.body["attempt"]) for m in cluster.net.take(b"w2", Kind.JOB)] == [(held, 2)]
    assert cluster.job(held)["status"] == "assigned" and cluster.job(held)["node"] == "beta"
    assert cluster.job(long)["node"] == "alpha" and not jobs_sent(cluster, b"w1")


def test_no_recall_without_an_idle_node_that_fits_or_from_a_worker_that_cannot(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    long, other, held = held_behind_a_long_job(cluster, recall=True)
    cluster.now += 5
    cluster.coordinator.tick(cluster.now)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "beta is busy: nowhere better to go"
    cluster.hello(b"w3", "gamma", slots=1, engines=("gstreamer",), recall=True)
    cluster.coordinator.tick(cluster.now + 1)
    assert not cluster.net.take(b"w1", Kind.CANCEL), "gamma is idle but cannot run an ffmpeg job"
    older = Cluster(tmp_path / "older")
    _, other, held = held_behind_a_long_job(older)  # alpha's worker did not say `recall` in its HELLO
    older.result(b"w2", other, 1)
    older.now += 5
    older.coordinator.tick(older.now)
    assert not older.net.take(b"w1", Kind.CANCEL), "a worker that does not know recall would cancel the job"


def test_a_held_job_that_fits_no_idle_node_is_not_read_again_until_the_idle_nodes_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each look reads the job from the store; with an idle node of another engine it found nothing ten times a
    second. Now it looks again when another node idles, or after RECHECK seconds."""
    cluster = Cluster(tmp_path)
    long, other, held = held_behind_a_long_job(cluster, recall=True)
    cluster.hello(b"w3", "gamma", slots=1, engines=("gstreamer",), recall=True)
    reads: list[str] = []
    real = cluster.store.get_job
    monkeypatch.setattr(cluster.store, "get_job", lambda job_id: (reads.append(job_id), real(job_id))[1])
    cluster.now += 2
    for tenth in range(1, 30):  # 2.9 s of the loop's ticks: gamma is idle and cannot take it
        cluster.coordinator.tick(cluster.now + tenth / 10)
    assert reads.count(held) == 1 and not cluster.net.take(b"w1", Kind.CANCEL)
    cluster.now += 3
    cluster.result(b"w2", other, 1)  # beta idles: a node it was not checked against
    cluster.coordinator.tick(cluster.now)
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": held, "attempt": 1, "recall": True}]
    assert cluster.job(long)["status"] in ("assigned", "running")


def test_a_job_that_started_before_the_recall_arrived_runs_on(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    long, other, held = held_behind_a_long_job(cluster, recall=True)
    cluster.result(b"w2", other, 1)
    cluster.now += 2
    cluster.coordinator.tick(cluster.now)
    assert len(cluster.net.take(b"w1", Kind.CANCEL)) == 1
    cluster.result(b"w1", long, 1)  # the recall crosses the long job's end: alpha starts the held one
    cluster.deliver(b"w1", Kind.STARTED, {"job": held, "attempt": 1, "at": cluster.now})
    cluster.coordinator.tick(cluster.now + 5)
    assert cluster.job(held)["status"] == "running" and cluster.job(held)["node"] == "alpha"
    assert not cluster.net.take(b"w1", Kind.CANCEL)


def test_a_hello_with_a_bad_prefetch_is_refused_naming_the_field(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    replies = cluster.hello(b"w1", "alpha", prefetch=-1)
    assert [m.kind for m in replies] == [Kind.REFUSED] and "prefetch" in replies[0].body["error"]
    assert cluster.store.get_node("alpha") is None


# ---- the worker -----------------------------------------------------------------------------------------


def null_job(agent: Agent, job: str, now: float, attempt: int = 1) -> None:
    agent.on_frame(encode(Kind.JOB, {"job": job, "attempt": attempt, "spec": {
        "engine": "null", "scenario": "t", "queue": "default", "priority": "medium", "labels": {},
        "params": {"duration": 1, "resolution": "160x120", "fps": 25, "codec": "h264"}}}), now)
    agent.drain_events(now)


def busy_agent(tmp_path: Path, clocks: tuple[Clock, Clock], **options: Any) -> Agent:  # noqa: F811
    """A welcomed agent with one slot taken by an attempt still running (as a runner thread leaves it)."""
    mono, _ = clocks
    agent = make_agent(tmp_path, clocks, slots=1, **options)
    welcome(agent, mono())
    agent.attempts["busy"] = Attempt(job="busy", attempt=1, spec={"engine": "null"}, received_at=mono())
    return agent


def sent_results(agent: Agent) -> dict[str, dict[str, Any]]:
    return {job: body for (job, _), (body, _) in agent.unacked.items()}


def test_a_held_job_starts_the_moment_the_running_one_ends(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=1)
    try:
        null_job(agent, "next", mono())
        assert "next" in agent.held and "next" not in sent_results(agent), "held, not run"
        assert {"job": "next", "attempt": 1, "queued": True} in agent.heartbeat_body()["jobs"]
        assert {"job": "next", "attempt": 1} in agent.hello_body()["running"]
        agent.emit(Event("finished", "busy", 1, {"status": "completed"}))
        agent.drain_events(mono())
        results = sent_results(agent)
        assert results["busy"]["status"] == "completed" and results["next"]["status"] == "completed"
        assert not agent.held and not agent.attempts
    finally:
        agent.shutdown()


def test_a_job_past_slots_and_prefetch_is_refused(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=1)
    try:
        null_job(agent, "held", mono())
        null_job(agent, "extra", mono())
        extra = sent_results(agent)["extra"]
        assert extra["refused"] is True and extra["error"] == "no free slot"
        assert list(agent.held) == ["held"]
    finally:
        agent.shutdown()


def test_without_prefetch_a_job_past_the_slots_is_refused(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=0)
    try:
        null_job(agent, "extra", mono())
        assert sent_results(agent)["extra"]["refused"] is True and not agent.held
    finally:
        agent.shutdown()


def test_a_drain_hands_held_jobs_back_at_once_and_lets_the_running_one_finish(tmp_path: Path,
                                                                              clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=1)
    try:
        null_job(agent, "held", mono())
        agent.request_stop()
        agent.check_stop(mono())
        held = sent_results(agent)["held"]
        assert held["refused"] is True and held["status"] == "failed" and held["failure"] == "worker_lost"
        assert list(agent.attempts) == ["busy"] and not agent.attempts["busy"].cancel.is_set()
        agent.emit(Event("finished", "busy", 1, {"status": "completed"}))
        agent.drain_events(mono())
        assert sent_results(agent)["busy"]["status"] == "completed" and not agent.attempts
    finally:
        agent.shutdown()


def test_a_canceled_held_job_ends_at_once_without_running(tmp_path: Path, clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=1)
    try:
        null_job(agent, "held", mono())
        agent.on_frame(encode(Kind.CANCEL, {"job": "held", "attempt": 1}), mono())
        result = sent_results(agent)["held"]
        assert result["status"] == "canceled" and result["error"] == "canceled by the master"
        assert not agent.held and "held" not in agent.attempts and agent.completed == 0
    finally:
        agent.shutdown()


def test_a_lost_master_makes_held_jobs_lost_without_starting_them(tmp_path: Path,
                                                                  clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=2)
    try:
        null_job(agent, "a", mono())
        null_job(agent, "b", mono())
        agent.lease_expired(mono() + 11)
        results = sent_results(agent)
        assert {results["a"]["failure"], results["b"]["failure"]} == {"worker_lost"}
        assert results["a"]["status"] == results["b"]["status"] == "failed"
        assert agent.completed == 0 and agent.attempts["busy"].cancel.is_set()
    finally:
        agent.shutdown()


def test_a_recall_hands_back_a_held_job_but_never_stops_a_running_one(tmp_path: Path,
                                                                      clocks: tuple[Clock, Clock]) -> None:  # noqa: F811
    mono, _ = clocks
    agent = busy_agent(tmp_path, clocks, prefetch=1)
    try:
        assert agent.hello_body()["recall"] is True
        null_job(agent, "held", mono())
        agent.on_frame(encode(Kind.CANCEL, {"job": "busy", "attempt": 1, "recall": True}), mono())
        assert not agent.attempts["busy"].cancel.is_set() and "busy" not in sent_results(agent)
        agent.on_frame(encode(Kind.CANCEL, {"job": "held", "attempt": 1, "recall": True}), mono())
        result = sent_results(agent)["held"]
        assert (result["status"], result["failure"], result["refused"], result["recalled"]) == \
            ("failed", "worker_lost", True, True)
        assert not agent.held and list(agent.attempts) == ["busy"] and agent.completed == 0
    finally:
        agent.shutdown()
