"""The coordinator driven by scripted peers and a fixed clock: no sockets, no sleeping."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.master.coordinator import Coordinator, MasterConfig
from ffrtmp.master.store import SqliteStore
from ffrtmp.protocol import Kind, Message, decode, encode, unbatch

T0 = 1_700_000_000.0


class Net:
    """Collects what the coordinator sends; routes listed in `gone` are unreachable (ROUTER_MANDATORY)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Message]] = []
        self.gone: set[bytes] = set()

    def send(self, route: bytes, frame: bytes) -> bool:
        if route in self.gone:
            return False
        message = decode(frame)
        for one in unbatch(message) if message.kind is Kind.BATCH else [message]:
            self.sent.append((route, one))
        return True

    def take(self, route: bytes, kind: Kind | None = None) -> list[Message]:
        mine = [m for r, m in self.sent if r == route and (kind is None or m.kind is kind)]
        self.sent = [(r, m) for r, m in self.sent if not (r == route and (kind is None or m.kind is kind))]
        return mine


class Cluster:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.store = SqliteStore(tmp_path / "master.db")
        self.net = Net()
        self.config = MasterConfig(**config)
        self.coordinator = Coordinator(self.store, self.config, self.net.send, rng=random.Random(7))
        self.now = T0
        self.rids = 0

    def deliver(self, route: bytes, kind: Kind, body: dict[str, Any] | None = None) -> None:
        self.coordinator.handle_batch([(route, encode(kind, body))], self.now)

    def hello(self, route: bytes, name: str, slots: int = 1, engines: tuple[str, ...] = ("ffmpeg", "null"),
              running: list[dict[str, Any]] | None = None, **extra: Any) -> list[Message]:
        body = {"name": name, "fingerprint": f"fp-{name}", "version": "test", "slots": slots,
                "engines": list(engines), "running": running or [],
                "encoders": {"libx264": {"codec": "h264", "available": True, "hardware": False}}, **extra}
        self.deliver(route, Kind.HELLO, body)
        return self.net.take(route, Kind.WELCOME) + self.net.take(route, Kind.REFUSED)

    def request(self, op: str, args: dict[str, Any] | None = None, key: str | None = None,
                route: bytes = b"client") -> dict[str, Any]:
        self.rids += 1
        body: dict[str, Any] = {"rid": str(self.rids), "op": op, "args": args or {}}
        if key is not None:
            body["key"] = key
        self.deliver(route, Kind.REQUEST, body)
        replies = [m for m in self.net.take(route, Kind.REPLY) if m.body["rid"] == str(self.rids)]
        assert len(replies) == 1
        return replies[0].body

    def submit(self, **job: Any) -> str:
        reply = self.request("submit", {"jobs": [{"scenario": "t", "engine": "null", **job}]})
        assert reply["status"] == 200, reply
        return str(reply["body"]["ids"][0])

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.request("get", {"id": job_id})
        assert reply["status"] == 200
        return dict(reply["body"])

    def result(self, route: bytes, job_id: str, attempt: int, status: str = "completed", **extra: Any) -> None:
        self.deliver(route, Kind.RESULT, {"job": job_id, "attempt": attempt, "status": status, "at": self.now,
                                          **extra})


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def test_hello_is_welcomed_with_the_timing_the_workers_must_use(cluster: Cluster) -> None:
    replies = cluster.hello(b"w1", "alpha")
    assert [m.kind for m in replies] == [Kind.WELCOME]
    assert replies[0].body == {"node": "alpha", "heartbeat_interval": 1.0, "node_timeout": 10.0, "publish": True}
    assert cluster.store.get_node("alpha")["status"] == "online"


def test_a_submit_reaches_an_idle_worker_in_the_same_batch(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    jobs = cluster.net.take(b"w1", Kind.JOB)
    assert len(jobs) == 1 and jobs[0].body["job"] == job_id and jobs[0].body["attempt"] == 1
    assert jobs[0].body["spec"]["engine"] == "null"
    assert cluster.job(job_id)["status"] == "assigned"


def test_started_and_result_complete_the_job_and_are_acknowledged(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    assert cluster.job(job_id)["status"] == "running"
    cluster.now += 2
    cluster.result(b"w1", job_id, 1, metrics={"frames": 30})
    assert [m.body for m in cluster.net.take(b"w1", Kind.ACK)] == [{"job": job_id, "attempt": 1}]
    job = cluster.job(job_id)
    assert job["status"] == "completed" and job["metrics"] == {"frames": 30} and job["progress"] == 1.0
    assert [h["status"] for h in job["history"]] == ["pending", "assigned", "running", "completed"]


def test_dispatch_follows_queue_and_priority_weights(cluster: Cluster) -> None:
    low = cluster.submit(queue="batch", priority="low")
    high = cluster.submit(queue="live", priority="high")
    medium = cluster.submit(queue="default", priority="medium")
    cluster.hello(b"w1", "alpha", slots=3)
    order = [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)]
    assert order == [high, medium, low]


def test_a_repeated_result_is_acknowledged_but_recorded_once(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.result(b"w1", job_id, 1)
    cluster.result(b"w1", job_id, 1)
    assert len(cluster.net.take(b"w1", Kind.ACK)) == 2
    history = cluster.job(job_id)["history"]
    assert [h["status"] for h in history].count("completed") == 1


def test_failed_attempt_is_retried_on_another_node_after_backoff(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(engine="ffmpeg", codec="h264")
    assert cluster.net.take(b"w1", Kind.JOB)
    cluster.hello(b"w2", "beta")
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="boom")
    job = cluster.job(job_id)
    assert job["status"] == "pending" and job["not_before"] is not None
    assert not cluster.net.take(b"w2", Kind.JOB), "the retry waits for its backoff"
    cluster.now += 5.5
    cluster.coordinator.tick(cluster.now)
    assert [m.body["attempt"] for m in cluster.net.take(b"w2", Kind.JOB)] == [2], "the other node gets it"
    assert not cluster.net.take(b"w1", Kind.JOB)


def test_invalid_input_is_not_retried(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.result(b"w1", job_id, 1, status="failed", failure="invalid_input", error="no such input")
    job = cluster.job(job_id)
    assert job["status"] == "failed" and job["failure"] == "invalid_input" and job["attempts"] == 1


def test_retries_stop_at_max_retries(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(max_retries=1)
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="one")
    cluster.now += 6  # past the first backoff (5 s with jitter), within the node timeout
    cluster.coordinator.tick(cluster.now)
    cluster.result(b"w1", job_id, 2, status="failed", failure="encoder_error", error="two")
    job = cluster.job(job_id)
    assert job["status"] == "failed" and job["attempts"] == 2 and job["error"] == "two"


def test_a_silent_node_loses_its_attempts_to_a_healthy_one_at_once(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.hello(b"w2", "beta")
    cluster.now += 5
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.now += 6  # alpha silent for 11 s > node timeout; beta heard 6 s ago
    cluster.coordinator.tick(cluster.now)
    assert cluster.store.get_node("alpha")["status"] == "offline"
    assert [(m.body["job"], m.body["attempt"]) for m in cluster.net.take(b"w2", Kind.JOB)] == [(job_id, 2)]
    assert cluster.coordinator.counters.dead_nodes == 1


def test_a_late_result_from_a_node_thought_dead_is_ignored(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.hello(b"w2", "beta")
    cluster.now += 11
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.coordinator.tick(cluster.now)
    cluster.result(b"w2", job_id, 2)
    cluster.result(b"w1", job_id, 1)  # alpha wakes up with its stale result
    assert not cluster.net.take(b"w1", Kind.ACK), "not before alpha has joined again: it resends after WELCOME"
    cluster.hello(b"w1", "alpha", running=[{"job": job_id, "attempt": 1}])
    cluster.result(b"w1", job_id, 1)
    assert cluster.net.take(b"w1", Kind.ACK), "stale results are still acknowledged"
    job = cluster.job(job_id)
    assert job["status"] == "completed" and job["node"] == "beta" and job["attempts"] == 2
    assert [h["status"] for h in job["history"]].count("completed") == 1
    assert cluster.coordinator.counters.stale >= 1


def test_heartbeat_from_an_unknown_connection_asks_for_hello(cluster: Cluster) -> None:
    cluster.deliver(b"stranger", Kind.HEARTBEAT, {"jobs": []})
    assert [m.kind for m in cluster.net.take(b"stranger")] == [Kind.RESYNC]


def test_heartbeat_progress_is_recorded_and_replied_with_pending_count(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.submit()
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "progress": 0.5, "fps": 30.0}]})
    reply = cluster.net.take(b"w1", Kind.HEARTBEAT)
    assert reply[0].body == {"pending": 1}
    job = cluster.job(job_id)
    assert job["progress"] == 0.5 and job["metrics"]["fps"] == 30.0


def test_heartbeat_naming_a_job_this_node_does_not_run_cancels_it(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": "f" * 32, "attempt": 3}]})
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": "f" * 32, "attempt": 3}]


def test_a_second_live_worker_with_the_same_name_is_refused(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    replies = cluster.hello(b"w2", "alpha")
    assert replies[0].kind is Kind.REFUSED and replies[0].body["status"] == 409
    assert "already connected" in replies[0].body["error"]
    assert len(cluster.store.list_nodes()) == 1


def test_a_restarted_worker_takes_over_its_name_when_the_old_connection_is_gone(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.net.gone.add(b"w1")
    replies = cluster.hello(b"w1-new", "alpha")  # restarted: it no longer runs the job
    assert replies[0].kind is Kind.WELCOME
    assert [m.body["attempt"] for m in cluster.net.take(b"w1-new", Kind.JOB)] == [2]
    assert cluster.job(job_id)["history"][-2]["reason"].startswith("worker_lost")


def test_a_job_sent_to_a_vanished_connection_is_requeued(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    cluster.hello(b"w2", "beta")
    cluster.net.gone.add(b"w1")
    job_id = cluster.submit()
    job = cluster.job(job_id)
    assert job["node"] == "beta" and job["attempts"] == 2


def test_master_restart_adopts_attempts_a_worker_still_runs(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    first.hello(b"w1", "alpha", slots=2)
    kept, lost = first.submit(), first.submit()
    first.store.close()
    second = Cluster(tmp_path)  # a new master process on the same database
    second.coordinator.restore(second.now)
    replies = second.hello(b"w1b", "alpha", slots=2, running=[{"job": kept, "attempt": 1}])
    assert replies[0].kind is Kind.WELCOME
    second.result(b"w1b", kept, 1)
    assert second.job(kept)["status"] == "completed" and second.job(kept)["attempts"] == 1
    assert second.job(lost)["attempts"] == 2, "the attempt the worker did not report is retried"


def test_attempts_of_a_node_that_never_comes_back_after_restart_are_retried(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    first.hello(b"w1", "alpha")
    job_id = first.submit()
    first.store.close()
    second = Cluster(tmp_path)
    second.coordinator.restore(second.now)
    second.hello(b"w2", "beta")
    assert not second.net.take(b"w2", Kind.JOB), "alpha gets the node timeout to come back"
    second.now += 11
    second.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    second.coordinator.tick(second.now)
    assert [m.body for m in second.net.take(b"w2", Kind.JOB)][0]["job"] == job_id


def test_cancel_of_a_running_job_stops_it_on_its_worker_and_wins_over_a_late_completion(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    reply = cluster.request("cancel", {"id": job_id[:6]})
    assert reply["body"] == {"id": job_id, "status": "canceled", "changed": True}
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": job_id, "attempt": 1}]
    cluster.result(b"w1", job_id, 1)
    assert cluster.job(job_id)["status"] == "canceled"


def test_invalid_submit_names_the_field_and_stores_nothing(cluster: Cluster) -> None:
    reply = cluster.request("submit", {"jobs": [{"scenario": "t", "bitrate": "abc"}]})
    assert reply["status"] == 400 and reply["error"].startswith("bitrate:")
    reply = cluster.request("submit", {"jobs": [{"scenario": "t"}, {"scenario": "t", "queue": "urgent"}]})
    assert reply["status"] == 400 and reply["error"].startswith("jobs[1].queue:")
    assert cluster.store.status_counts() == {}


def test_api_key_is_required_on_every_request_and_hello(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, api_key="s3cret")
    assert cluster.request("stats")["status"] == 401
    assert cluster.request("stats", key="wrong")["status"] == 401
    assert cluster.request("stats", key="s3cret")["status"] == 200
    replies = cluster.hello(b"w1", "alpha")
    assert replies[0].kind is Kind.REFUSED and replies[0].body["status"] == 401
    assert cluster.hello(b"w1", "alpha", key="s3cret")[0].kind is Kind.WELCOME


def test_unknown_job_is_not_found_and_unknown_op_is_invalid(cluster: Cluster) -> None:
    assert cluster.request("get", {"id": "abc123"})["status"] == 404
    assert cluster.request("get", {"id": "not-hex!"})["status"] == 404
    assert cluster.request("frobnicate")["status"] == 400


@pytest.mark.parametrize("frame", [b"", b"garbage", b"{}", b'{"v":1,"k":"request","b":{"rid":"9"}}',
                                   b'{"v":1,"k":"hello","b":{"name":5}}', b"\xff\xfe" * 10])
def test_malformed_frames_never_crash_and_requests_still_get_an_answer(cluster: Cluster, frame: bytes) -> None:
    cluster.coordinator.handle_batch([(b"x", frame)], cluster.now)
    replies = cluster.net.take(b"x")
    if b'"rid":"9"' in frame:
        assert replies[0].kind is Kind.REPLY and replies[0].body["status"] == 400
    assert cluster.request("stats")["status"] == 200


def test_a_job_no_node_can_run_waits_with_a_reason_without_blocking_others(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    cluster.net.take(b"w1")
    gpu = cluster.submit(engine="ffmpeg", codec="h264_nvenc", queue="live", priority="high")
    cpu = cluster.submit(engine="ffmpeg", codec="h264", queue="batch", priority="low")
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [cpu]
    gpu_job = cluster.job(gpu)
    assert gpu_job["status"] == "pending" and "h264_nvenc" in gpu_job["reason"]


def test_drain_stops_new_dispatch_to_the_node(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha", slots=2)
    reply = cluster.request("nodes.drain", {"name": "alpha"})
    assert reply["body"]["status"] == "draining"
    assert cluster.net.take(b"w1", Kind.DRAIN)
    job_id = cluster.submit()
    assert not cluster.net.take(b"w1", Kind.JOB)
    assert cluster.job(job_id)["status"] == "pending"


def test_bye_frees_the_node_and_retries_what_it_ran(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.BYE)
    assert cluster.store.get_node("alpha")["status"] == "offline"
    assert cluster.job(job_id)["status"] == "pending"


def test_logs_are_stored_for_the_current_attempt_only(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.deliver(b"w1", Kind.LOG, {"job": job_id, "attempt": 1, "lines": [[1, cluster.now, "stderr", "hello"],
                                                                           ["bad"], [2, cluster.now, "stderr", "x"]]})
    cluster.deliver(b"w1", Kind.LOG, {"job": job_id, "attempt": 7, "lines": [[1, cluster.now, "stderr", "stale"]]})
    reply = cluster.request("logs", {"id": job_id})
    assert [line["line"] for line in reply["body"]["lines"]] == ["hello", "x"]


def test_a_nul_in_a_workers_strings_is_stored_as_a_stand_in_on_every_store(cluster: Cluster) -> None:
    """PostgreSQL's text cannot hold U+0000: a result or log line with one was refused there (never recorded,
    never acknowledged, so resent for ever), while SQLite kept it. Both now store U+FFFD in its place."""
    cluster.hello(b"w1", "alpha", slots=2)
    failed, completed = cluster.submit(), cluster.submit()
    cluster.net.take(b"w1")
    cluster.deliver(b"w1", Kind.LOG, {"job": failed, "attempt": 1, "lines": [[1, cluster.now, "stderr", "a\x00b"]]})
    cluster.now += 1
    cluster.result(b"w1", failed, 1, status="failed", error="bad\x00bytes", failure="engine")
    cluster.result(b"w1", completed, 1, output="out\x00.mp4", metrics={"note\x00": "x\x00"})
    assert sorted(m.body["job"] for m in cluster.net.take(b"w1", Kind.ACK)) == sorted([failed, completed])
    retried = cluster.job(failed)
    assert retried["status"] == "pending" and retried["error"] == "bad\ufffdbytes"
    done = cluster.job(completed)
    assert done["status"] == "completed" and done["output"] == "out\ufffd.mp4"
    assert done["metrics"]["note\ufffd"] == "x\ufffd"
    assert [line["line"] for line in cluster.request("logs", {"id": failed})["body"]["lines"]] == ["a\ufffdb"]


def test_a_stalled_attempt_is_stopped_and_retried_while_a_progressing_one_is_not(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stall_timeout=60.0, node_timeout=1000.0)
    cluster.hello(b"w1", "alpha", slots=2)
    stuck, moving = cluster.submit(), cluster.submit()
    for second in range(1, 62, 10):  # `moving` gains frames every heartbeat, `stuck` stays at 5
        cluster.now = T0 + second
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": stuck, "attempt": 1, "frames": 5},
                                                         {"job": moving, "attempt": 1, "frames": second}]})
        cluster.coordinator.tick(cluster.now)
    cluster.now = T0 + 75
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": stuck, "attempt": 1, "frames": 5},
                                                     {"job": moving, "attempt": 1, "frames": 75}]})
    cluster.coordinator.tick(cluster.now)
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": stuck, "attempt": 1}]
    job = cluster.job(stuck)
    assert job["status"] == "pending" and job["failure"] == "stalled"
    assert cluster.job(moving)["status"] == "running"
    assert len(cluster.coordinator.nodes["alpha"].attempts) == 2, "the stopped attempt holds its slot until it ends"
    cluster.result(b"w1", stuck, 1, status="canceled")
    assert len(cluster.coordinator.nodes["alpha"].attempts) == 1


def test_per_queue_stall_timeout_is_shorter_for_live(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stall_timeout=600.0, stall_timeouts={"live": 5.0}, node_timeout=1000.0)
    cluster.hello(b"w1", "alpha", slots=2)
    live, other = cluster.submit(queue="live"), cluster.submit()
    cluster.now += 6
    cluster.coordinator.tick(cluster.now)
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.CANCEL)] == [live]
    assert cluster.job(other)["status"] == "assigned"


def test_an_attempt_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, node_timeout=1000.0)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(timeout="10s", max_retries=0)
    for second in range(5, 50, 5):
        cluster.now = T0 + second
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1, "frames": second}]})
        cluster.coordinator.tick(cluster.now)
    job = cluster.job(job_id)
    assert job["status"] == "failed" and job["failure"] == "timeout"


def test_aging_lets_an_old_batch_job_pass_newer_heavier_ones(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, max_wait=60.0)
    old = cluster.submit(queue="batch", priority="low")
    cluster.now += 61
    fresh = cluster.submit(queue="live", priority="high")
    cluster.hello(b"w1", "alpha")
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [old]
    assert cluster.job(fresh)["status"] == "pending"


def test_without_aging_weight_wins_however_long_a_job_waited(cluster: Cluster) -> None:
    old = cluster.submit(queue="batch", priority="low")
    cluster.now += 10_000
    fresh = cluster.submit(queue="live", priority="high")
    cluster.hello(b"w1", "alpha")
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [fresh]
    assert cluster.job(old)["status"] == "pending"


def test_a_node_back_after_its_timeout_gets_its_still_pending_attempt_adopted(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.now += 11
    cluster.coordinator.tick(cluster.now)
    assert cluster.job(job_id)["status"] == "pending"
    cluster.hello(b"w1b", "alpha", running=[{"job": job_id, "attempt": 1}])
    assert not cluster.net.take(b"w1b", Kind.JOB) and not cluster.net.take(b"w1b", Kind.CANCEL)
    job = cluster.job(job_id)
    assert job["status"] == "running" and job["attempts"] == 1 and job["node"] == "alpha"
    cluster.result(b"w1b", job_id, 1)
    assert cluster.job(job_id)["status"] == "completed"


def test_a_reported_attempt_that_is_not_ours_is_stopped_and_holds_its_slot(cluster: Cluster) -> None:
    cluster.hello(b"w2", "beta")
    job_id = cluster.submit()  # attempt 1 runs on beta
    cluster.hello(b"w1", "alpha", running=[{"job": "a" * 32, "attempt": 4}])
    assert [m.body for m in cluster.net.take(b"w1", Kind.CANCEL)] == [{"job": "a" * 32, "attempt": 4}]
    other = cluster.submit()
    assert not cluster.net.take(b"w1", Kind.JOB), "alpha's only slot is still busy with the stale attempt"
    cluster.result(b"w1", "a" * 32, 4, status="canceled")
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [other]
    assert cluster.job(job_id)["node"] == "beta"


def test_a_job_the_worker_turns_down_is_retried_without_using_up_retries(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(max_retries=0)
    for _ in range(3):
        cluster.net.take(b"w1", Kind.JOB)
        cluster.result(b"w1", job_id, cluster.job(job_id)["attempts"], status="failed", failure="worker_lost",
                       error="no free slot", refused=True)
        assert cluster.job(job_id)["status"] == "pending"
        cluster.now += 1.5
        cluster.coordinator.tick(cluster.now)
    cluster.result(b"w1", job_id, 4)
    assert cluster.job(job_id)["status"] == "completed"


def test_a_worker_that_says_it_drains_gets_no_new_jobs(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [], "draining": True})
    cluster.submit()
    assert not cluster.net.take(b"w1", Kind.JOB)
    assert cluster.store.get_node("alpha")["status"] == "draining"


def _results_frame(cluster: Cluster, results: list[tuple[str, int]], **extra: Any) -> bytes:
    from ffrtmp.protocol import encode_batch

    return encode_batch([(Kind.RESULT, {"job": job_id, "attempt": attempt, "status": "completed",
                                        "at": cluster.now, **extra}) for job_id, attempt in results])


def test_a_batch_of_results_completes_each_job_once_and_acknowledges_all(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha", slots=4)
    ids = [cluster.submit() for _ in range(3)]
    cluster.net.take(b"w1")
    cluster.now += 1
    # The worker folds each start into its result; the first job's result comes twice in the frame.
    frame = _results_frame(cluster, [(ids[0], 1), (ids[1], 1), (ids[0], 1), (ids[2], 1)], started_at=cluster.now)
    cluster.coordinator.handle_batch([(b"w1", frame)], cluster.now)
    acks = cluster.net.take(b"w1", Kind.ACK)
    assert sorted(m.body["job"] for m in acks) == sorted([ids[0], ids[1], ids[0], ids[2]])
    for job_id in ids:
        job = cluster.job(job_id)
        assert (job["status"], job["progress"]) == ("completed", 1.0)
        assert [h["status"] for h in job["history"]] == ["pending", "assigned", "running", "completed"]
    assert cluster.coordinator.counters.stale == 1
    assert cluster.store.status_counts() == {"completed": 3}


def test_a_batch_that_cannot_be_recorded_together_is_recorded_one_by_one(cluster: Cluster,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the bulk write fails (a bug, a full disk); each ending is then tried alone."""
    cluster.hello(b"w1", "alpha", slots=4)
    ids = [cluster.submit() for _ in range(3)]
    cluster.net.take(b"w1")
    real = cluster.store.finish_jobs

    def fails_in_bulk(endings: list[Any]) -> list[dict[str, Any] | None]:
        if len(endings) > 1:
            real(endings)  # writes, then fails: the savepoint must undo these writes
            raise RuntimeError("injected")
        if endings[0].job_id == ids[1]:
            raise RuntimeError("injected for one job")
        return real(endings)

    monkeypatch.setattr(cluster.store, "finish_jobs", fails_in_bulk)
    cluster.coordinator.handle_batch([(b"w1", _results_frame(cluster, [(j, 1) for j in ids]))], cluster.now)
    monkeypatch.undo()
    assert [cluster.job(j)["status"] for j in ids] == ["completed", "assigned", "completed"]
    assert [h["status"] for h in cluster.job(ids[0])["history"]].count("completed") == 1
    assert cluster.store.status_counts() == {"completed": 2, "assigned": 1}
    # The one whose end was lost is not left 'assigned' forever: the worker no longer runs it, so it is retried.
    cluster.net.take(b"w1")
    cluster.now += 10
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": []})
    (retry,) = cluster.net.take(b"w1", Kind.JOB)
    assert (retry.body["job"], retry.body["attempt"]) == (ids[1], 2)


def test_only_an_offline_node_can_be_forgotten(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    refused = cluster.request("nodes.forget", {"name": "alpha"})
    assert refused["status"] == 409 and "nodes drain" in refused["error"]
    cluster.deliver(b"w1", Kind.BYE)
    assert cluster.request("nodes.forget", {"name": "alpha"}) == {"rid": str(cluster.rids), "status": 200,
                                                                  "body": {"name": "alpha", "forgotten": True}}
    assert cluster.request("nodes.list")["body"]["nodes"] == []
    assert "alpha" not in cluster.coordinator.nodes and cluster.store.get_node("alpha") is None
    assert cluster.request("nodes.forget", {"name": "alpha"})["status"] == 404
    assert cluster.hello(b"w1", "alpha")[0].kind is Kind.WELCOME, "a forgotten node may join again"


def test_forgetting_needs_the_admin_role(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    from ffrtmp.master.auth import create_key

    reader = create_key(cluster.store, "read", "acme")[1]
    cluster.coordinator.authority._checked = -1e9  # look for keys now, not at the next check
    assert cluster.request("nodes.forget", {"name": "alpha"}, key=reader)["status"] == 401


def test_nodes_offline_longer_than_forget_offline_are_forgotten(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, forget_offline=3600.0, scheduler_interval=5.0)
    cluster.hello(b"w1", "alpha")
    cluster.hello(b"w2", "beta")
    cluster.deliver(b"w1", Kind.BYE)
    cluster.now += 3000
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.coordinator.tick(cluster.now)
    assert "alpha" in cluster.coordinator.nodes and cluster.store.get_node("alpha") is not None
    cluster.now += 601
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.coordinator.tick(cluster.now)
    assert "alpha" not in cluster.coordinator.nodes and cluster.store.get_node("alpha") is None
    assert cluster.store.get_node("beta")["status"] == "online", "a node that heartbeats stays"


def test_a_node_whose_attempts_wait_for_it_after_a_restart_is_not_forgotten(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    first.hello(b"w1", "alpha")
    first.submit()
    first.store.close()
    second = Cluster(tmp_path)  # a new master process: alpha's attempt waits for it to come back
    second.coordinator.restore(second.now)
    refused = second.request("nodes.forget", {"name": "alpha"})
    assert refused["status"] == 409 and "1 attempt(s)" in refused["error"]


def test_an_observer_failing_on_a_job_end_costs_neither_the_end_nor_the_batch(cluster: Cluster) -> None:
    from ffrtmp.master.observer import Observer

    class Broken(Observer):
        def job_finished(self, job: dict[str, Any], now: float) -> None:
            raise RuntimeError("injected")

    cluster.coordinator.observer.add(Broken())
    cluster.hello(b"w1", "alpha", slots=2)
    done = cluster.submit()
    cluster.net.take(b"w1")
    submit = encode(Kind.REQUEST, {"rid": "late", "op": "submit", "args": {"jobs": [{"scenario": "t",
                                                                                    "engine": "null"}]}})
    result = encode(Kind.RESULT, {"job": done, "attempt": 1, "status": "completed", "at": cluster.now})
    cluster.coordinator.handle_batch([(b"client", submit), (b"w1", result)], cluster.now)
    (reply,) = cluster.net.take(b"client", Kind.REPLY)
    assert reply.body["status"] == 200, "the submit in the same batch stands"
    assert cluster.job(done)["status"] == "completed"
    assert cluster.job(reply.body["body"]["ids"][0])["status"] == "assigned"


def test_a_restart_counts_a_nodes_offline_time_from_the_restart(tmp_path: Path) -> None:
    """A node connected for days before the master stopped is not forgotten before it can come back."""
    first = Cluster(tmp_path, forget_offline=3600.0)
    first.hello(b"w1", "alpha")
    first.store.close()
    second = Cluster(tmp_path, forget_offline=3600.0)
    second.now = first.now + 5 * 86400
    second.coordinator.restore(second.now)
    second.coordinator.tick(second.now)
    assert second.store.get_node("alpha")["status"] == "offline"
    second.now += 3601
    second.coordinator.tick(second.now)
    assert second.store.get_node("alpha") is None
