"""The master's HTTPS API with real curl: every endpoint, errors as JSON naming the field, and the same keys,
roles, tenants and rate limits as ZeroMQ clients (one implementation: client_gate)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from ffrtmp.master.auth import create_key
from ffrtmp.master.http_tls import fingerprint
from ffrtmp.master.store import open_store
from tests.httpapi import http_master

NULL_JOB = {"scenario": "null", "engine": "ffmpeg", "duration": 1}


def make_keys(root: Path, *wanted: tuple[str, str], db: str | Path | None = None) -> list[str]:
    """API keys on the master's database (`db`, default its SQLite file) before it starts, as `ffrtmp keys api
    create` makes them."""
    (root / "master").mkdir(parents=True, exist_ok=True)
    store = open_store(root / "master" / "master.db" if db is None else db, 0)
    try:
        return [create_key(store, role, tenant)[1] for role, tenant in wanted]
    finally:
        store.close()


def test_every_job_endpoint_answers_json_over_https(tmp_path: Path) -> None:
    with http_master(tmp_path) as (cluster, curl):
        health = curl.get("/health")
        assert (health.status, health.json()["status"]) == (200, "ok")
        spec = curl.get("/api/openapi.json").json()
        assert spec["openapi"].startswith("3.1") and "/api/jobs/{id}/logs" in spec["paths"]

        one = curl.post("/api/jobs", body=NULL_JOB)
        assert one.status == 201 and len(one.json()["ids"]) == 1
        many = curl.post("/api/jobs", body=[NULL_JOB, {**NULL_JOB, "queue": "batch"}])
        assert many.status == 201 and len(many.json()["ids"]) == 2
        keyed = curl.post("/api/jobs", body={"jobs": [NULL_JOB]}, headers={"Idempotency-Key": "hook-1"})
        again = curl.post("/api/jobs", body={"jobs": [NULL_JOB]}, headers={"Idempotency-Key": "hook-1"})
        assert again.json() == {**keyed.json(), "repeated": True}

        job_id = one.json()["ids"][0]
        shown = curl.get(f"/api/jobs/{job_id[:10]}")  # a prefix, as on the command line
        assert shown.status == 200 and shown.json()["id"] == job_id and shown.json()["history"]
        with cluster.client() as zmq_client:  # `jobs show --json` prints Client.get's object
            assert shown.json() == zmq_client.get(job_id)

        page = curl.get("/api/jobs?limit=2")
        assert page.status == 200 and len(page.json()["jobs"]) == 2 and page.json()["next"] is not None
        rest = curl.get(f"/api/jobs?limit=100&cursor={page.json()['next']}").json()
        seen = [job["id"] for job in page.json()["jobs"] + rest["jobs"]]
        assert sorted(seen) == sorted(one.json()["ids"] + many.json()["ids"] + keyed.json()["ids"])
        assert rest["next"] is None
        assert [job["queue"] for job in curl.get("/api/jobs?queue=batch").json()["jobs"]] == ["batch"]

        assert curl.post(f"/api/jobs/{job_id}/cancel").json() == {"id": job_id, "status": "canceled", "changed": True}
        assert curl.post(f"/api/jobs/{job_id}/retry").json() == {"id": job_id, "status": "pending"}
        logs = curl.get(f"/api/jobs/{job_id}/logs")
        assert logs.status == 200 and logs.json()["lines"] == [] and logs.json()["done"] is False
        assert curl.get("/api/nodes").json() == {"nodes": []}
        stats = curl.get("/api/stats").json()
        assert stats["jobs"]["pending"] == 4 and stats["nodes"]["total"] == 0


def test_errors_are_json_with_the_cli_meaning_and_the_field(tmp_path: Path) -> None:
    with http_master(tmp_path) as (_, curl):
        bad = curl.post("/api/jobs", body={**NULL_JOB, "bitrate": "lots"})
        assert bad.status == 400 and bad.json()["field"] == "bitrate" and "bitrate" in bad.json()["error"]
        second = curl.post("/api/jobs", body=[NULL_JOB, {**NULL_JOB, "fps": -3}])
        assert (second.status, second.json()["field"]) == (400, "jobs[1].fps")
        assert curl.post("/api/jobs", body="{not json").json()["field"] == "body"
        assert curl.post("/api/jobs", body="7").json()["field"] == "body"
        assert curl.get("/api/jobs?limit=many").json() == {"error": "limit: must be a whole number", "field": "limit"}
        assert curl.get("/api/jobs?status=done").json()["field"] == "status"
        missing = curl.get("/api/jobs/ffffffffffff")
        assert missing.status == 404 and missing.json()["field"] is None
        job_id = curl.post("/api/jobs", body=NULL_JOB).json()["ids"][0]
        pending_retry = curl.post(f"/api/jobs/{job_id}/retry")
        assert pending_retry.status == 400 and pending_retry.json()["field"] == "id"
        assert curl.get("/api/nowhere").status == 404
        wrong_method = curl("DELETE", "/api/jobs")
        assert wrong_method.status == 405 and wrong_method.json()["error"]


def test_keys_roles_and_tenants_are_those_of_zeromq_clients(tmp_path: Path) -> None:
    admin, submit_a, read_a, submit_b = make_keys(tmp_path, ("admin", "default"), ("submit", "a"), ("read", "a"),
                                                  ("submit", "b"))
    with http_master(tmp_path) as (cluster, curl):
        assert curl.get("/health").status == 200  # no key needed
        assert curl.get("/api/openapi.json").status == 200
        nokey = curl.get("/api/jobs")
        assert nokey.status == 401 and nokey.headers["www-authenticate"].startswith("Bearer")
        assert curl.get("/api/jobs", key="ffk_000000000000_" + "x" * 43).status == 401
        assert curl.get("/api/jobs", headers={"Authorization": "Basic abc"}).json()["field"] == "Authorization"

        a_job = curl.post("/api/jobs", key=submit_a, body=NULL_JOB).json()["ids"][0]
        b_job = curl.post("/api/jobs", key=submit_b, body=NULL_JOB).json()["ids"][0]
        assert curl.post("/api/jobs", key=read_a, body=NULL_JOB).status == 403
        assert curl.post(f"/api/jobs/{a_job}/cancel", key=read_a).status == 403

        assert curl.get(f"/api/jobs/{a_job}", key=read_a).status == 200
        assert curl.get(f"/api/jobs/{b_job}", key=read_a).status == 404  # another tenant's job does not exist
        assert curl.post(f"/api/jobs/{b_job}/cancel", key=submit_a).status == 404
        assert [j["id"] for j in curl.get("/api/jobs", key=read_a).json()["jobs"]] == [a_job]
        assert curl.get("/api/stats", key=read_a).json()["jobs"]["pending"] == 1
        assert {j["id"] for j in curl.get("/api/jobs", key=admin).json()["jobs"]} == {a_job, b_job}

        with cluster.client(api_key=read_a) as zmq_client:  # the ZeroMQ client sees exactly the same
            assert [j["id"] for j in zmq_client.list()] == [a_job]


def test_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    (key,) = make_keys(tmp_path, ("submit", "default"))
    with http_master(tmp_path, rate_limits={"submit": (0.2, 2.0)}) as (_, curl):
        answers = [curl.post("/api/jobs", key=key, body=NULL_JOB) for _ in range(3)]
        assert [a.status for a in answers] == [201, 201, 429]
        assert answers[2].json()["field"] is None and "rate limited" in answers[2].json()["error"]
        assert int(answers[2].headers["retry-after"]) >= 1


def test_the_self_signed_certificate_is_made_once_private_and_its_fingerprint_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ffrtmp.master")
    with http_master(tmp_path) as (_, curl):
        assert curl.get("/health").status == 200  # curl verified it against --cacert, by the name localhost
    key = tmp_path / "master" / "api-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    pem = curl.cacert.read_bytes()
    assert fingerprint(pem) in caplog.text and "made now" in caplog.text
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    caplog.clear()
    with http_master(tmp_path) as (_, curl2):
        assert curl2.get("/health").status == 200
    assert curl.cacert.read_bytes() == pem and "made now" not in caplog.text  # the same pair, not a new one


def test_allow_keys_guards_zeromq_while_bearer_keys_guard_http(tmp_path: Path) -> None:
    from ffrtmp.errors import MasterUnreachable, NotAuthorized

    (key,) = make_keys(tmp_path, ("submit", "default"))
    allowed = tmp_path / "allowed"
    allowed.mkdir()  # no CURVE key is admitted
    with http_master(tmp_path, allow_keys=allowed) as (cluster, curl):
        assert curl.post("/api/jobs", key=key, body=NULL_JOB).status == 201
        assert curl.get("/api/jobs").status == 401
        with cluster.client(timeout=1.0) as zmq_client, pytest.raises((MasterUnreachable, NotAuthorized)):
            zmq_client.request("ping")


def test_guessing_keys_over_http_spends_the_address_budget_before_any_decoding(tmp_path: Path) -> None:
    (key,) = make_keys(tmp_path, ("read", "default"))
    with http_master(tmp_path, preauth_rate=5.0) as (cluster, curl):
        guesses = [curl.get("/api/stats", key="ffk_000000000000_" + "x" * 43) for _ in range(3)]
        assert [g.status for g in guesses[:2]] == [401, 429]
        assert "before authentication" in guesses[1].json()["error"] and guesses[1].headers["retry-after"] == "1"
        with cluster.client(api_key=key) as zmq_client:  # another peer: its own budget
            assert zmq_client.stats()["version"]


@pytest.mark.parametrize(("status", "error", "expected"), [
    (507, "store full: 12 MiB free on /data, below --store-min-free; retry after 30s", (503, None, "30")),
    (429, "rate limited: too many submit requests; retry after 0.25s", (429, None, "1")),
    (409, "node w1 is already connected", (409, None, None)),
    (401, "a read key may not submit (it needs a role with 'submit')", (403, None, None)),
    (401, "the API key is missing, wrong or revoked", (401, None, None)),
    (400, "jobs[2].fps: must be a whole number from 1 to 240", (400, "jobs[2].fps", None)),
])
def test_reply_statuses_become_http_statuses_with_the_cli_meaning(
        status: int, error: str, expected: tuple[int, str | None, str | None]) -> None:
    from ffrtmp.master.http_gateway import reply_error

    answer = reply_error(status, error)
    assert (answer.status, answer.field, answer.headers.get("Retry-After")) == expected
    assert answer.body() == {"error": error, "field": expected[1]}


def test_plain_http_on_loopback_serves_the_same_api_for_a_proxy_in_front(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    (key,) = make_keys(tmp_path, ("submit", "default"))
    caplog.set_level(logging.INFO, "ffrtmp.master")
    with http_master(tmp_path, master={"api_tls": False}) as (cluster, curl):
        assert cluster.server.api is not None
        plain = replace(curl, base=f"http://127.0.0.1:{cluster.server.api.port}")
        assert plain.get("/health").status == 200
        made = plain.post("/api/jobs", body=NULL_JOB, key=key)
        assert made.status == 201, made.text
        assert plain.get(f"/api/jobs/{made.json()['ids'][0]}", key=key).json()["status"] == "pending"
        assert plain.get("/api/jobs").status == 401, "the same keys"
        assert not (tmp_path / "master" / "api-cert.pem").exists(), "no certificate is made for plain HTTP"
        assert "HTTP API on http://127.0.0.1:" in caplog.text and "plain HTTP (--no-api-tls)" in caplog.text
