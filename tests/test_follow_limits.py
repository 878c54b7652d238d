"""Followers on the master: resuming after a reconnect, the caps per key and in total, the goodbye on a
stop, and each tenant's share of the total log size; scripted peers and a fixed clock."""

from __future__ import annotations

from pathlib import Path

from ffrtmp.master.auth import create_key
from ffrtmp.master.logbook import RESTARTING, LogPolicy
from ffrtmp.protocol import Kind
from tests.test_coordinator import T0, Cluster
from tests.test_logs import follow, log, received


def places(cluster: Cluster, route: bytes = b"follower") -> list[tuple[int, int]]:
    return [(x["attempt"], x["seq"]) for m in received(cluster, route) if m.kind is Kind.PARTIAL
            for x in m.body["body"]["lines"]]


def test_a_resumed_follow_gets_only_the_lines_after_the_last_one_seen(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "a", "b", "c", "d")
    follow(cluster, job_id, after=[1, 2], tail=1)  # `tail` is for a first look only
    assert places(cluster) == [(1, 3), (1, 4)]
    log(cluster, b"w1", job_id, 1, "e", first_seq=5)
    assert places(cluster) == [(1, 5)]


def test_a_resumed_follow_of_the_latest_attempt_still_gets_the_rest_of_the_one_it_saw(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "a", "b")
    cluster.result(b"w1", job_id, 1, status="failed", failure="encoder_error", error="crash")
    cluster.now += 10
    cluster.coordinator.tick(cluster.now)
    log(cluster, b"w1", job_id, 2, "c")
    follow(cluster, job_id, after=[1, 1])  # it had seen attempt 1 up to seq 1 when the master went away
    assert places(cluster) == [(1, 2), (2, 1)]


def test_a_follow_that_replaces_an_earlier_one_ends_it(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job_id = cluster.submit()
    first = follow(cluster, job_id)
    follow(cluster, job_id, replaces=first)
    followers = cluster.coordinator.logbook.followers[job_id]
    assert [f.rid for f in followers] == [str(cluster.rids)]
    assert cluster.coordinator.logbook.follower_count() == 1


def test_bad_resume_arguments_are_refused_naming_the_field(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job_id = cluster.submit()
    for args, name in (({"after": [1]}, "after"), ({"after": "1,2"}, "after"), ({"after": [1, True]}, "after"),
                       ({"replaces": 5}, "replaces"), ({"replaces": "x" * 65}, "replaces")):
        reply = cluster.request("logs.follow", {"id": job_id, **args})
        assert reply["status"] == 400 and reply["error"].startswith(f"{name}: "), reply
    assert cluster.coordinator.logbook.followers == {}


def test_followers_are_capped_per_key(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_followers_per_key=2))
    mine, other = create_key(cluster.store, "read", "acme")[1], create_key(cluster.store, "read", "acme")[1]
    submitter = create_key(cluster.store, "submit", "acme")[1]
    job_id = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]},
                             key=submitter)["body"]["ids"][0]
    replies = [waiting(cluster, job_id, mine) for _ in range(3)]
    assert replies[:2] == [None, None]
    assert replies[2] is not None and replies[2]["status"] == 429
    assert "--max-followers-per-key" in replies[2]["error"]
    assert waiting(cluster, job_id, other) is None, "another key has its own share"


def test_followers_are_capped_in_total_and_an_ended_one_frees_its_place(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_followers=2))
    cluster.hello(b"w1", "alpha", slots=2)
    first, second = cluster.submit(), cluster.submit()
    assert waiting(cluster, first, None, route=b"c1") is None
    assert waiting(cluster, second, None, route=b"c2") is None
    over = waiting(cluster, second, None, route=b"c3")
    assert over is not None and over["status"] == 429 and "--max-followers" in over["error"]
    cluster.result(b"w1", first, 1)
    assert waiting(cluster, second, None, route=b"c3") is None
    assert cluster.coordinator.logbook.follower_count() == 2


def test_a_finished_job_can_always_be_read(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_followers=1))
    cluster.hello(b"w1", "alpha", slots=2)
    running, done = cluster.submit(), cluster.submit()
    cluster.result(b"w1", done, 1)
    assert waiting(cluster, running, None, route=b"c1") is None
    cluster.deliver(b"c2", Kind.REQUEST, {"rid": "9", "op": "logs.follow", "args": {"id": done}})
    replies = cluster.net.take(b"c2", Kind.REPLY)
    assert replies[-1].body["status"] == 200, "it ends at once, so it takes no place"


def test_a_stopping_master_tells_every_follower(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    job_id = cluster.submit()
    rid = follow(cluster, job_id)
    received(cluster)
    cluster.coordinator.logbook.restarting()
    cluster.coordinator.flush()
    replies = cluster.net.take(b"follower", Kind.REPLY)
    assert [(m.body["rid"], m.body["status"], m.body["error"]) for m in replies] == [(rid, 503, RESTARTING)]
    assert cluster.coordinator.logbook.follower_count() == 0


def waiting(cluster: Cluster, job_id: str, key: str | None, route: bytes = b"client") -> dict[str, object] | None:
    """Start a follow; None while it stays open, else its (error) reply."""
    cluster.rids += 1
    body: dict[str, object] = {"rid": str(cluster.rids), "op": "logs.follow", "args": {"id": job_id}}
    if key is not None:
        body["key"] = key
    cluster.deliver(route, Kind.REQUEST, body)
    replies = [m for m in cluster.net.take(route, Kind.REPLY) if m.body["rid"] == str(cluster.rids)]
    cluster.net.take(route)
    return dict(replies[0].body) if replies else None


# ---- each tenant's share of the total -------------------------------------------------------------


def test_past_the_total_cap_the_tenant_holding_most_loses_its_own_logs_first(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, logs=LogPolicy(max_total_bytes=60), node_timeout=1e9)
    quiet, chatty = create_key(cluster.store, "submit", "quiet")[1], create_key(cluster.store, "submit", "chatty")[1]

    def run(key: str, text: str) -> str:
        """A job of the key's tenant with one 10-byte log line, then ended (canceled: no worker needed)."""
        job_id = str(cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]},
                                     key=key)["body"]["ids"][0])
        with cluster.store.transaction():
            cluster.coordinator.logbook.append(job_id, 1, [(1, cluster.now, "stderr", text)])
        assert cluster.request("cancel", {"id": job_id}, key=key)["status"] == 200
        cluster.now += 1
        return job_id

    early = [run(quiet, "q" * 9) for _ in range(2)]  # the oldest logs: 20 bytes
    flood = [run(chatty, "c" * 9) for _ in range(6)]  # 60 bytes more: 80 in all, 20 over the cap
    cluster.now = T0 + 100
    for _ in range(5):
        cluster.coordinator.tick(cluster.now)
        cluster.now += 0.2
    kept = lambda job_id: bool(cluster.store.job_logs(job_id))  # noqa: E731
    assert [kept(job_id) for job_id in early] == [True, True], "the quiet tenant keeps its logs"
    assert [kept(job_id) for job_id in flood] == [False, False, True, True, True, True]
    assert cluster.coordinator.logbook.total_bytes == 60
    assert cluster.coordinator.logbook.tenant_bytes == {"quiet": 20, "chatty": 40}
