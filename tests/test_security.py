"""API keys, roles, tenants, quotas and rate limits, with scripted peers and a fixed clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.master.auth import create_key, list_keys, revoke_key, set_quota
from ffrtmp.master.ratelimit import RateLimiter, parse_limits
from ffrtmp.protocol import Kind
from tests.test_coordinator import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def keys(cluster: Cluster, *specs: tuple[str, str]) -> list[str]:
    return [create_key(cluster.store, role, tenant)[1] for role, tenant in specs]


def submit(cluster: Cluster, key: str, **job: object) -> dict[str, object]:
    return cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null", **job}]}, key=key)


# ---- the token bucket -------------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    limiter = RateLimiter({"submit": (2.0, 3.0)})
    assert [limiter.check("k", "submit", 0.0) for _ in range(3)] == [None, None, None]
    assert limiter.check("k", "submit", 0.0) == pytest.approx(0.5)
    assert limiter.check("k", "submit", 0.5) is None, "one token back after 1/rate seconds"
    assert limiter.check("other", "submit", 0.5) is None, "each key has its own bucket"


def test_a_zero_rate_means_unlimited_and_limits_parse() -> None:
    assert all(RateLimiter({"read": (0.0, 1.0)}).check("k", "read", 0.0) is None for _ in range(1000))
    assert parse_limits(["submit=50/100", "logs=10", "read=0"]) == {
        "submit": (50.0, 100.0), "logs": (10.0, 20.0), "read": (0.0, 1.0)}
    for bad in ("submit", "bogus=1", "read=x", "read=-1"):
        with pytest.raises(InvalidInput, match="rate-limit"):
            parse_limits([bad])


# ---- keys and roles ---------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_checked_on_every_request(cluster: Cluster) -> None:
    key_id, token = create_key(cluster.store, "submit", "acme")
    stored = cluster.store.conn.execute("SELECT * FROM api_keys").fetchone()
    assert token not in " ".join(str(v) for v in tuple(stored))
    assert [k["id"] for k in list_keys(cluster.store)] == [key_id]
    cluster.coordinator.authority._checked = -1e9
    assert cluster.request("stats")["status"] == 401, "once a key exists, a key is required"
    assert cluster.request("stats", key=token)["status"] == 200
    assert cluster.request("stats", key=token[:-1] + "x")["status"] == 401
    revoke_key(cluster.store, key_id)
    assert cluster.request("stats", key=token)["status"] == 401, "revoked from the next request on"
    with pytest.raises(NotFound):
        revoke_key(cluster.store, key_id)


def test_roles_limit_what_a_key_may_do(cluster: Cluster) -> None:
    admin, submitter, reader, worker = keys(cluster, ("admin", "ops"), ("submit", "acme"), ("read", "acme"),
                                            ("worker", "*"))
    assert submit(cluster, reader)["status"] == 401
    assert submit(cluster, worker)["status"] == 401
    assert submit(cluster, submitter)["status"] == 200
    assert cluster.request("list", key=reader)["status"] == 200
    assert cluster.request("list", key=worker)["status"] == 401
    cluster.hello(b"w1", "alpha", key=worker)
    assert cluster.request("nodes.drain", {"name": "alpha"}, key=submitter)["status"] == 401
    assert cluster.request("nodes.drain", {"name": "alpha"}, key=admin)["status"] == 200


def test_a_worker_needs_a_worker_or_admin_key(cluster: Cluster) -> None:
    (reader,) = keys(cluster, ("read", "acme"))
    refused = cluster.hello(b"w1", "alpha", key=reader)
    assert refused[0].kind is Kind.REFUSED and refused[0].body["status"] == 401
    assert "worker" in refused[0].body["error"]


# ---- tenants ----------------------------------------------------------------------------------------


def test_a_tenant_sees_and_controls_only_its_own_jobs(cluster: Cluster) -> None:
    acme, globex, admin = keys(cluster, ("submit", "acme"), ("submit", "globex"), ("admin", "ops"))
    mine = submit(cluster, acme)["body"]["ids"][0]  # type: ignore[index]
    theirs = submit(cluster, globex)["body"]["ids"][0]  # type: ignore[index]
    for op in ("get", "cancel", "retry", "logs"):
        assert cluster.request(op, {"id": theirs}, key=acme)["status"] == 404, op
    assert cluster.request("get", {"id": mine}, key=acme)["status"] == 200
    listed = cluster.request("list", key=acme)["body"]["jobs"]
    assert [job["id"] for job in listed] == [mine]
    assert {job["id"] for job in cluster.request("list", key=admin)["body"]["jobs"]} == {mine, theirs}
    assert cluster.request("stats", key=acme)["body"]["jobs"]["pending"] == 1
    assert cluster.store.get_job(mine)["tenant"] == "acme"


def test_a_tenant_sees_the_activity_of_its_own_jobs_only(cluster: Cluster) -> None:
    acme, globex, admin, worker = keys(cluster, ("submit", "acme"), ("submit", "globex"), ("admin", "ops"),
                                       ("worker", "*"))
    cluster.hello(b"w1", "alpha", slots=2, key=worker)
    for key in (acme, globex):
        job_id = submit(cluster, key, engine="null")["body"]["ids"][0]  # type: ignore[index]
        cluster.result(b"w1", job_id, 1)

    def done(key: str) -> int:
        return sum(cluster.request("stats", key=key)["body"]["activity"]["completed"])

    assert (done(acme), done(globex), done(admin)) == (1, 1, 2)


def test_a_pending_quota_refuses_the_submit_that_would_pass_it(cluster: Cluster) -> None:
    (acme,) = keys(cluster, ("submit", "acme"))
    set_quota(cluster.store, "acme", max_pending=2, max_running=None)
    assert submit(cluster, acme)["status"] == 200
    reply = cluster.request("submit", {"jobs": [{"scenario": "t"}, {"scenario": "t"}]}, key=acme)
    assert reply["status"] == 429 and "quota" in reply["error"]
    assert cluster.store.tenant_pending("acme") == 1, "nothing of the refused submit was stored"


def test_a_running_quota_holds_a_tenants_jobs_while_others_run(cluster: Cluster) -> None:
    acme, globex, worker = keys(cluster, ("submit", "acme"), ("submit", "globex"), ("worker", "*"))
    set_quota(cluster.store, "acme", max_pending=None, max_running=1)
    first = submit(cluster, acme)["body"]["ids"][0]  # type: ignore[index]
    held = submit(cluster, acme)["body"]["ids"][0]  # type: ignore[index]
    other = submit(cluster, globex)["body"]["ids"][0]  # type: ignore[index]
    cluster.hello(b"w1", "alpha", slots=3, key=worker)
    assert sorted(m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)) == sorted([first, other])
    waiting = cluster.store.get_job(held)
    assert waiting["status"] == "pending" and "running quota" in waiting["reason"]
    cluster.result(b"w1", first, 1)
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [held]


# ---- rate limits ------------------------------------------------------------------------------------


def test_a_flooding_key_is_limited_while_another_is_served(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, rate_limits={"read": (10.0, 5.0)})
    flood, calm = keys(cluster, ("read", "acme"), ("read", "globex"))
    statuses = [cluster.request("stats", key=flood)["status"] for _ in range(8)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
    reply = cluster.request("stats", key=flood)
    assert "retry after" in reply["error"]
    assert cluster.request("stats", key=calm)["status"] == 200
    assert cluster.coordinator.counters.rate_limited[("read", "acme")] == 4
    cluster.now += 1.0
    assert cluster.request("stats", key=flood)["status"] == 200


def test_a_flooding_worker_has_its_messages_dropped(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, rate_limits={"node": (1.0, 3.0)})
    cluster.hello(b"w1", "alpha")
    for _ in range(6):
        cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": []})
    assert len(cluster.net.take(b"w1", Kind.HEARTBEAT)) == 3
    assert cluster.coordinator.counters.rate_limited[("node", "")] == 3


def test_revoked_curve_keys_are_refused_per_message(cluster: Cluster) -> None:
    cluster.coordinator.allowed_keys = {"good-key"}
    cluster.coordinator.handle_batch([(b"c", b'{"v":1,"k":"request","b":{"rid":"1","op":"stats"}}', "good-key")],
                                     cluster.now)
    assert cluster.net.take(b"c", Kind.REPLY)[0].body["status"] == 200
    cluster.coordinator.handle_batch([(b"c", b'{"v":1,"k":"request","b":{"rid":"2","op":"stats"}}', "bad-key")],
                                     cluster.now)
    reply = cluster.net.take(b"c", Kind.REPLY)[0]
    assert reply.body["status"] == 401 and "no longer" in reply.body["error"]
