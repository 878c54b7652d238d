"""The registry of client operations: one entry per name gives its role, rate bucket, answer and whether it
writes, and the REQUEST handler, the degraded mode and the rate limiter all follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ffrtmp.client
from ffrtmp.master.auth import GRANTS, create_key
from ffrtmp.master.operations import OPERATIONS, READ_ONLY, STREAMS, needs_of, rate_of
from ffrtmp.master.ratelimit import DEFAULT_LIMITS, KINDS
from ffrtmp.protocol import Kind
from tests.test_coordinator import Cluster

PERMISSIONS = frozenset().union(*GRANTS.values())


def test_each_operation_has_one_answer_a_known_permission_and_a_client_bucket() -> None:
    for name, op in OPERATIONS.items():
        assert op.name == name
        assert (op.answer is None) != (op.stream is None), f"{name}: an answer or a stream, not both"
        assert op.needs in PERMISSIONS and op.needs != "worker", f"{name}: {op.needs}"
        assert op.rate in KINDS and op.rate in DEFAULT_LIMITS and op.rate != "node", f"{name}: {op.rate}"


def test_every_operation_the_client_calls_is_registered() -> None:
    called = set(re.findall(r'request\(\s*"([a-z.]+)"', Path(ffrtmp.client.__file__).read_text()))
    assert len(called) >= 10, called  # the pattern still finds the client's calls
    assert called <= OPERATIONS.keys(), called - OPERATIONS.keys()


def test_the_derived_tables() -> None:
    assert {"logs.follow"} == STREAMS
    assert {"get", "list", "logs", "logs.follow", "nodes.list", "nodes.get", "stats", "ping", "cluster",
            "recommend", "files_info", "download", "report"} == READ_ONLY
    assert all(OPERATIONS[name].needs == "read" for name in READ_ONLY), "a read-role key never writes"
    assert needs_of("no.such.op") == "admin" and rate_of("no.such.op") == "read"
    assert rate_of("cancel") == "submit" and rate_of("logs.follow") == "logs"


# ---- the REQUEST handler follows the registry (a real coordinator and store, a scripted network) ------


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def key(cluster: Cluster, role: str, tenant: str = "acme") -> str:
    token = create_key(cluster.store, role, tenant)[1]
    cluster.coordinator.authority._checked = -1e9  # reread the keys now
    return token


@pytest.mark.parametrize("role", ["read", "submit", "admin"])
def test_a_role_may_call_exactly_the_operations_its_grants_cover(cluster: Cluster, role: str) -> None:
    token = key(cluster, role)
    for name, op in OPERATIONS.items():
        if op.stream is not None:
            continue  # needs a job to follow: covered below
        reply = cluster.request(name, {}, key=token)
        if op.needs in GRANTS[role]:
            assert reply["status"] != 401, (name, reply)
        else:
            assert reply["status"] == 401 and f"needs a role with '{op.needs}'" in reply["error"], (name, reply)


def test_a_read_key_may_follow_but_not_cancel(cluster: Cluster) -> None:
    submitter, reader = key(cluster, "submit"), key(cluster, "read")
    reply = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}]}, key=submitter)
    job_id = reply["body"]["ids"][0]
    assert cluster.request("cancel", {"id": job_id}, key=reader)["status"] == 401
    cluster.deliver(b"client", Kind.REQUEST, {"rid": "f1", "op": "logs.follow", "args": {"id": job_id},
                                              "key": reader})
    assert cluster.net.take(b"client", Kind.REPLY) == [], "no refusal: it streams until the job ends"
    assert cluster.coordinator.logbook.follower_count() == 1


def test_an_unknown_operation_is_named_to_admins_only(cluster: Cluster) -> None:
    admin, reader = key(cluster, "admin"), key(cluster, "read")
    assert cluster.request("no.such.op", key=reader)["status"] == 401
    reply = cluster.request("no.such.op", key=admin)
    assert reply["status"] == 400 and "unknown operation" in reply["error"]


def test_each_operation_draws_on_its_own_bucket(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, rate_limits={"submit": (0.001, 1.0), "logs": (0.001, 1.0)})
    job_id = cluster.submit()
    assert cluster.request("cancel", {"id": job_id})["status"] == 429, "cancel draws on the submit bucket"
    assert cluster.request("get", {"id": job_id})["status"] == 200, "a read does not"
    assert cluster.request("logs", {"id": job_id})["status"] == 200
    assert cluster.request("logs", {"id": job_id})["status"] == 429
    assert cluster.coordinator.counters.rate_limited == {("submit", ""): 1, ("logs", ""): 1}
