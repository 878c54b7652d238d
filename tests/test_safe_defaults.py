"""Safe defaults (issue 12; H3, M2–M5 of docs/design.md): closed after the last key, scoped worker keys, pages,
job limits, tenant lanes, protected mode, private database files and redacted logs. Scripted peers and a fixed clock."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.master import requests
from ffrtmp.master.auth import create_key, revoke_key, set_quota
from ffrtmp.master.limits import JobLimits
from ffrtmp.master.protection import had_api_keys, is_loopback, resolve_bind
from ffrtmp.master.store import Store
from ffrtmp.master.tenants import parse_allowed, set_allowed
from ffrtmp.protocol import Kind
from ffrtmp.redact import redact_urls
from tests.test_coordinator import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def reread_keys(cluster: Cluster) -> None:
    """The master rereads its keys once a second; a test does not wait for that."""
    cluster.coordinator.authority._checked = -1e9


def submit(cluster: Cluster, key: str | None, **job: object) -> dict[str, object]:
    return cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null", **job}]}, key=key)


def submitted(cluster: Cluster, key: str, **job: object) -> str:
    reply = submit(cluster, key, **job)
    assert reply["status"] == 200, reply
    return str(reply["body"]["ids"][0])  # type: ignore[index]


# ---- H3: a master that had keys stays closed --------------------------------------------------------


def test_revoking_the_last_key_never_reopens_the_master(cluster: Cluster) -> None:
    assert cluster.request("stats")["status"] == 200, "a master that never had a key is open"
    key_id, token = create_key(cluster.store, "admin", None)
    reread_keys(cluster)
    assert cluster.request("stats", key=token)["status"] == 200
    revoke_key(cluster.store, key_id)
    reread_keys(cluster)
    for key in (None, token, "ffk_000000000000_" + "x" * 43):
        reply = cluster.request("stats", key=key)
        assert reply["status"] == 401, key
        assert "keys api create" in reply["error"], "the refusal says how to get a key again"
    assert cluster.request("nodes.drain", {"name": "alpha"})["status"] == 401
    refused = cluster.hello(b"w1", "alpha", key=token)
    assert refused[0].kind is Kind.REFUSED and refused[0].body["status"] == 401


def test_a_new_key_after_the_revoked_one_works_at_once(cluster: Cluster) -> None:
    key_id, _ = create_key(cluster.store, "admin", None)
    revoke_key(cluster.store, key_id)
    _, fresh = create_key(cluster.store, "submit", "acme")
    reread_keys(cluster)
    assert submit(cluster, fresh)["status"] == 200
    assert "keys api create" not in cluster.request("stats")["error"], "keys are active: the usual message"


# ---- M2: worker keys scoped to tenants and names ---------------------------------------------------


def test_a_tenant_scoped_worker_key_gets_only_that_tenants_jobs(cluster: Cluster) -> None:
    acme, globex = (create_key(cluster.store, "submit", t)[1] for t in ("acme", "globex"))
    acme_worker = create_key(cluster.store, "worker", "acme")[1]
    cluster.hello(b"w1", "alpha", slots=4, key=acme_worker)
    theirs = submit(cluster, globex)["body"]["ids"][0]  # type: ignore[index]
    mine = submit(cluster, acme)["body"]["ids"][0]  # type: ignore[index]
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [mine]
    pending = cluster.store.get_job(theirs)
    assert pending is not None and pending["status"] == "pending"
    assert pending["reason"] == "no connected worker has a worker key for tenant globex"


def test_a_worker_key_made_without_a_tenant_serves_every_tenant(cluster: Cluster) -> None:
    worker = create_key(cluster.store, "worker", None)[1]
    cluster.hello(b"w1", "alpha", slots=2, key=worker)
    for tenant in ("acme", "globex"):
        submit(cluster, create_key(cluster.store, "submit", tenant)[1])
    assert len(cluster.net.take(b"w1", Kind.JOB)) == 2


def test_a_worker_adopts_only_an_attempt_the_master_gave_it(cluster: Cluster) -> None:
    worker, admin = create_key(cluster.store, "worker", None)[1], create_key(cluster.store, "admin", None)[1]
    never_sent = submitted(cluster, admin)
    cluster.hello(b"w9", "rogue", key=worker, engines=("ffmpeg",),
                  running=[{"job": never_sent, "attempt": 0}, {"job": never_sent, "attempt": 1}])
    assert cluster.store.get_job(never_sent)["status"] == "pending", "attempt 0 or 1 of a job never dispatched"
    cluster.hello(b"w1", "alpha", slots=2, key=worker)
    given = submitted(cluster, admin)
    assert [m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)] == [never_sent, given]
    cluster.deliver(b"w1", Kind.BYE, {})
    assert cluster.store.get_job(given)["status"] == "pending", "alpha left: its attempt went back"
    cluster.net.take(b"w9")
    cluster.hello(b"w9", "rogue", key=worker, engines=("ffmpeg",), running=[{"job": given, "attempt": 1}])
    assert cluster.store.get_job(given)["status"] == "pending", "rogue did not run alpha's attempt"
    assert [m.body for m in cluster.net.take(b"w9", Kind.CANCEL)] == [{"job": given, "attempt": 1}]
    cluster.hello(b"w1", "alpha", key=worker, running=[{"job": given, "attempt": 1}])
    assert cluster.store.get_job(given)["status"] == "running", "alpha's own attempt is adopted back"


def test_a_worker_key_registers_only_the_names_it_allows(cluster: Cluster) -> None:
    gpu = create_key(cluster.store, "worker", None, node="gpu-*")[1]
    exact = create_key(cluster.store, "worker", None, node="box1")[1]
    refused = cluster.hello(b"w1", "alpha", key=gpu)
    assert refused[0].kind is Kind.REFUSED and refused[0].body["status"] == 401 and "gpu-*" in refused[0].body["error"]
    assert cluster.hello(b"w2", "gpu-7", key=gpu)[0].kind is Kind.WELCOME
    assert cluster.hello(b"w3", "box12", key=exact)[0].kind is Kind.REFUSED
    assert cluster.hello(b"w4", "box1", key=exact)[0].kind is Kind.WELCOME
    with pytest.raises(InvalidInput, match="node"):
        create_key(cluster.store, "submit", "acme", node="box1")


def test_a_squatter_with_another_key_cannot_take_a_nodes_name(cluster: Cluster) -> None:
    real, squatter = (create_key(cluster.store, "worker", None)[1] for _ in range(2))
    assert cluster.hello(b"w1", "wb2", key=real)[0].kind is Kind.WELCOME
    job_id = submitted(cluster, create_key(cluster.store, "admin", None)[1])
    cluster.net.gone.add(b"w1")  # the real worker was killed: its connection is gone
    refused = cluster.hello(b"w9", "wb2", key=squatter)
    assert refused[0].kind is Kind.REFUSED and refused[0].body["status"] == 401
    assert "belongs to another API key" in refused[0].body["error"]
    assert cluster.store.get_node("wb2")["api_key"] == real.split("_")[1]
    assert cluster.hello(b"w2", "wb2", key=real, running=[{"job": job_id, "attempt": 1}])[0].kind is Kind.WELCOME


def test_a_nodes_binding_survives_a_master_restart(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    real, squatter = (create_key(first.store, "worker", None)[1] for _ in range(2))
    first.hello(b"w1", "wb2", key=real)
    first.store.close()
    second = Cluster(tmp_path)
    second.coordinator.restore(second.now)
    assert second.hello(b"w9", "wb2", key=squatter)[0].kind is Kind.REFUSED
    assert second.hello(b"w1", "wb2", key=real)[0].kind is Kind.WELCOME


def test_a_revoked_worker_key_cuts_off_a_joined_worker_at_its_next_message(cluster: Cluster) -> None:
    key_id, worker = create_key(cluster.store, "worker", None)
    cluster.hello(b"w1", "alpha", key=worker)
    job_id = submitted(cluster, create_key(cluster.store, "admin", None)[1])
    assert cluster.net.take(b"w1", Kind.JOB)
    revoke_key(cluster.store, key_id)
    reread_keys(cluster)
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": [{"job": job_id, "attempt": 1}]})
    refused = cluster.net.take(b"w1", Kind.REFUSED)
    assert refused and refused[0].body["status"] == 401 and "revoked" in refused[0].body["error"]
    assert cluster.store.get_node("alpha")["status"] == "offline"
    assert cluster.store.get_job(job_id)["status"] == "pending", "its attempt goes to another worker"
    cluster.result(b"w1", job_id, 1)
    assert cluster.store.get_job(job_id)["status"] == "pending", "a result from the cut-off worker is not taken"


def test_a_worker_that_joined_an_open_master_is_cut_off_by_the_first_key(cluster: Cluster) -> None:
    assert cluster.hello(b"w1", "alpha")[0].kind is Kind.WELCOME, "open: no key needed"
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": []})
    assert not cluster.net.take(b"w1", Kind.REFUSED)
    create_key(cluster.store, "submit", "acme")
    reread_keys(cluster)
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": []})
    refused = cluster.net.take(b"w1", Kind.REFUSED)
    assert [m.body["status"] for m in refused] == [401] and "requires an API key" in refused[0].body["error"]
    assert cluster.store.get_node("alpha")["status"] == "offline"


# ---- M3: pages ---------------------------------------------------------------------------------------


def walk(cluster: Cluster, first: dict[str, Any]) -> list[str]:
    """Every job id, following the cursors from the first page."""
    seen = [job["id"] for job in first["jobs"]]
    cursor = first["next"]
    while cursor is not None:
        page = cluster.request("list", {"limit": 1000, "cursor": cursor})["body"]
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next"]
    return seen


def test_list_answers_pages_of_at_most_1000_with_a_cursor(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests, "LIST_BUDGET", 60.0)  # the page size alone decides here
    cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}] * 2500})
    first = cluster.request("list", {"limit": 100_000})["body"]
    assert len(first["jobs"]) == 1000 and first["next"] is not None
    seen = walk(cluster, first)
    assert len(seen) == len(set(seen)) == 2500
    assert seen == [job["id"] for job in cluster.request("list", {"limit": 1000})["body"]["jobs"]] + seen[1000:]
    assert cluster.request("list", {"limit": 10})["body"]["next"] is not None
    assert cluster.request("list", {"cursor": "x"})["status"] == 400


def test_a_page_ends_early_when_it_has_used_its_share_of_the_loop(cluster: Cluster,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """However slow the machine, one request holds the loop about LIST_BUDGET; the cursor gives the rest."""
    cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}] * 300})
    monkeypatch.setattr(requests, "LIST_BUDGET", 0.0)
    first = cluster.request("list", {"limit": 1000})["body"]
    assert len(first["jobs"]) == 63 and first["next"] is not None, "cut at the first look at the clock"
    seen = walk(cluster, first)
    assert len(seen) == len(set(seen)) == 300


# ---- M4: job limits and tenant lanes ----------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("resolution", "8192x8192"), ("fps", 240), ("duration", "1d"),
                                              ("bitrate", "500M")])
def test_the_default_limits_refuse_an_oversized_job_naming_the_field(cluster: Cluster, field: str,
                                                                   value: object) -> None:
    reply = submit(cluster, None, **{field: value})
    assert reply["status"] == 400 and str(reply["error"]).startswith(field), reply
    assert cluster.request("list")["body"]["jobs"] == [], "nothing stored"


def test_jobs_within_the_limits_pass_and_an_operator_can_raise_them(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    assert submit(cluster, None, resolution="2160x3840", fps=120, duration="6h", bitrate="50M")["status"] == 200
    raised = Cluster(tmp_path / "raised", limits=JobLimits.parse("8192x8192", 240, 86400, "500M"))
    assert submit(raised, None, resolution="8192x8192", fps=240, duration="1d", bitrate="500M")["status"] == 200
    with pytest.raises(InvalidInput, match="max-resolution"):
        JobLimits.parse("big", 60, 60, "1M")


def test_with_no_tenant_lanes_configured_every_tenant_may_use_live_high(cluster: Cluster) -> None:
    acme = create_key(cluster.store, "submit", "acme")[1]
    set_quota(cluster.store, "acme", max_pending=100, max_running=None)  # a quota alone restricts no lane
    assert submit(cluster, acme, queue="live", priority="high")["status"] == 200


def test_once_lanes_are_configured_live_and_high_are_a_grant(cluster: Cluster) -> None:
    acme, globex, admin = (create_key(cluster.store, role, t)[1]
                           for role, t in (("submit", "acme"), ("submit", "globex"), ("admin", "ops")))
    set_allowed(cluster.store, "acme", parse_allowed("queues", "live,default"), parse_allowed("priorities", "high"))
    assert submit(cluster, acme, queue="live", priority="high")["status"] == 200
    reply = submit(cluster, acme, queue="batch", priority="high")
    assert reply["status"] == 400 and str(reply["error"]).startswith("queue") and "default, live" in reply["error"]
    for job in ({"queue": "live"}, {"priority": "high"}):
        reply = submit(cluster, globex, **job)
        assert reply["status"] == 400 and str(reply["error"]).startswith(next(iter(job))), "others: everyday lanes"
    assert submit(cluster, globex, queue="batch", priority="low")["status"] == 200
    assert submit(cluster, admin, queue="live", priority="high")["status"] == 200, "admins are not restricted"
    with pytest.raises(InvalidInput, match="queues"):
        parse_allowed("queues", "live,urgent")


# ---- Low: other tenants' job ids ---------------------------------------------------------------------


def test_nodes_list_shows_a_tenant_only_its_own_running_jobs(cluster: Cluster) -> None:
    acme, globex, admin = (create_key(cluster.store, role, t)[1]
                           for role, t in (("submit", "acme"), ("submit", "globex"), ("admin", "ops")))
    cluster.hello(b"w1", "alpha", slots=2, key=create_key(cluster.store, "worker", None)[1])
    mine = submit(cluster, acme)["body"]["ids"][0]  # type: ignore[index]
    theirs = submit(cluster, globex)["body"]["ids"][0]  # type: ignore[index]
    for key, expected in ((acme, [mine]), (globex, [theirs]), (admin, sorted([mine, theirs]))):
        node = cluster.request("nodes.list", key=key)["body"]["nodes"][0]
        assert node["jobs"] == expected and set(node["progress"]) == set(expected)
        assert cluster.request("nodes.get", {"name": "alpha"}, key=key)["body"]["jobs"] == expected
        assert node["running"] == 2, "the node's load is not a secret"


# ---- M5: protected mode ------------------------------------------------------------------------------


def test_protected_mode_binds_loopback_and_refuses_an_open_network_bind() -> None:
    assert resolve_bind("auto", secured=False, insecure=False) == ("127.0.0.1", True)
    assert resolve_bind("auto", secured=True, insecure=False) == ("0.0.0.0", False)
    assert resolve_bind("127.0.0.1", secured=False, insecure=False) == ("127.0.0.1", False)
    assert resolve_bind("::1", secured=False, insecure=False) == ("::1", False)
    for address in ("0.0.0.0", "*", "192.168.1.5", "myhost"):
        with pytest.raises(InvalidInput, match="bind.*keys api create"):
            resolve_bind(address, secured=False, insecure=False)
        assert resolve_bind(address, secured=False, insecure=True) == (address, False)
        assert resolve_bind(address, secured=True, insecure=False) == (address, False)
    assert is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_a_database_that_ever_had_a_key_counts_as_secured(tmp_path: Path) -> None:
    path = tmp_path / "master.db"
    assert not had_api_keys(path), "no database yet"
    store = Store(path)
    assert not had_api_keys(path)
    key_id, _ = create_key(store, "admin", None)
    revoke_key(store, key_id)
    assert had_api_keys(path), "a revoked key still means the master is not open"
    store.close()


# ---- Low: private database files, redacted logs ------------------------------------------------------


def test_the_masters_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    from ffrtmp.master.server import MasterOptions, MasterServer

    data = tmp_path / "m"
    data.mkdir()
    (data / "master.db").touch(mode=0o644)  # from an older version
    os.chmod(data / "master.db", 0o644)
    server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=data, metrics=False))
    try:
        with server.store.transaction():
            server.store.insert_jobs([], 0.0, 0)
        server.store.conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        for name in ("master.db", "master.db-wal", "master.db-shm"):
            assert (data / name).exists(), name
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        server.close()


def test_stream_keys_and_url_secrets_are_redacted() -> None:
    assert redact_urls("failed: rtmp://10.0.0.1:1935/live/acme-secret-1: Input/output error") == \
        "failed: rtmp://10.0.0.1:1935/live/***: Input/output error"
    assert redact_urls("rtsp://user:pass@cam/s?token=t") == "rtsp://***@cam/s?***"
    assert redact_urls("rtmps://h/live/key/") == "rtmps://h/live/***/"
    assert redact_urls("rtmp://h/live and outputs/x.mp4") == "rtmp://h/live and outputs/x.mp4"


def test_the_master_log_never_shows_a_stream_key(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    import ffrtmp.master.server  # noqa: F401 (installs the filter on the master's logger)

    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(output="rtmp://10.0.0.1/live/acme-secret-streamkey", max_retries=0)
    with caplog.at_level("INFO", logger="ffrtmp.master"):
        cluster.result(b"w1", job_id, 1, status="failed", failure="output_error",
                       error="rtmp://10.0.0.1/live/acme-secret-streamkey: Input/output error")
    assert "failed for good" in caplog.text
    assert "acme-secret-streamkey" not in caplog.text and "live/***" in caplog.text
