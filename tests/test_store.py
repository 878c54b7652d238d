"""ffrtmp.master.store: the durable state, on a real SQLite file, with a fixed clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.jobspec import JobSpec, validate_submission
from ffrtmp.master.store import Store
from ffrtmp.master.store.dispatch import needs_key

T0 = 1_700_000_000.0


def spec(**options: Any) -> JobSpec:
    return validate_submission({"scenario": "test1", **options})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "master.db")
    yield db
    db.close()


def add(store: Store, now: float = T0, default_retries: int = 3, **options: Any) -> str:
    (job_id,) = store.insert_jobs([spec(**options)], now, default_retries)
    return job_id


def status(store: Store, job_id: str) -> str:
    job = store.get_job(job_id)
    assert job is not None
    return str(job["status"])


def history_statuses(store: Store, job_id: str) -> list[str]:
    return [entry["status"] for entry in store.job_history(job_id)]


def candidate_ids(store: Store, now: float = T0, limit: int = 100) -> list[str]:
    return [job["id"] for job in store.pending_candidates(now, limit)]


# ---- insert and dispatch order ----------------------------------------------------------------------


def test_insert_jobs_stores_the_spec(store: Store) -> None:
    job_id = add(store, queue="live", priority="high", labels={"gpu": "yes"}, timeout="1m")
    job = store.get_job(job_id)
    assert job is not None
    assert len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)
    assert job["status"] == "pending"
    assert (job["scenario"], job["queue"], job["priority"], job["weight"]) == ("test1", "live", "high", 30)
    assert job["params"] == spec().params
    assert job["labels"] == {"gpu": "yes"}
    assert job["max_retries"] == 3
    assert job["timeout"] == 60.0
    assert job["attempts"] == 0
    assert job["avoid"] == []
    assert job["created_at"] == T0
    assert store.job_history(job_id) == [{"at": T0, "status": "pending", "attempt": None, "node": None,
                                          "reason": "submitted"}]


def test_job_max_retries_wins_over_default(store: Store) -> None:
    job = store.get_job(add(store, default_retries=7, max_retries=0))
    assert job is not None and job["max_retries"] == 0
    job = store.get_job(add(store, default_retries=7))
    assert job is not None and job["max_retries"] == 7


def test_insert_jobs_returns_ids_in_order(store: Store) -> None:
    ids = store.insert_jobs([spec(fps=10), spec(fps=20), spec(fps=30)], T0, 3)
    assert len(set(ids)) == 3
    assert [job["params"]["fps"] for job in store.pending_candidates(T0, 10)] == [10, 20, 30]
    assert candidate_ids(store) == ids


def test_pending_candidates_by_weight_then_fifo(store: Store) -> None:
    batch_low = add(store, queue="batch", priority="low")
    default_1 = add(store)
    live_high = add(store, queue="live", priority="high")
    default_2 = add(store)
    default_high = add(store, queue="default", priority="high")
    live_low = add(store, queue="live", priority="low")  # weight 10, same as default/medium: FIFO among them
    batch_high = add(store, queue="batch", priority="high")
    assert candidate_ids(store) == [live_high, default_high, default_1, default_2, live_low, batch_high, batch_low]


def test_pending_candidates_fifo_within_one_batch(store: Store) -> None:
    ids = store.insert_jobs([spec() for _ in range(5)], T0, 3)
    assert candidate_ids(store) == ids


def test_pending_candidates_limit(store: Store) -> None:
    ids = store.insert_jobs([spec() for _ in range(5)], T0, 3)
    assert candidate_ids(store, limit=2) == ids[:2]


def test_pending_candidates_light_shape(store: Store) -> None:
    job_id = add(store, labels={"a": "b"})
    (job,) = store.pending_candidates(T0, 10)
    assert job == {"seq": 1, "id": job_id, "engine": "auto", "queue": "default", "params": spec().params,
                   "labels": {"a": "b"}, "avoid": [], "reason": None, "attempts": 0, "tenant": "",
                   "scenario": "test1", "priority": "medium", "timeout": None, "weight": 10, "created_at": T0,
                   "needs": needs_key("auto", spec().params, {"a": "b"})}


def test_pending_candidates_skip_non_pending(store: Store) -> None:
    first, second = add(store), add(store)
    store.assign_job(first, "n1", T0)
    assert candidate_ids(store) == [second]


def test_dispatch_queries_use_the_lanes_index(store: Store) -> None:
    """The dispatch queries must walk `jobs_lanes` in order, not sort every pending job (SPEC §3 order)."""
    store.insert_jobs([spec(queue=q) for q in ("live", "default", "batch") * 20], T0, 3)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        list(store.pending_candidates(T0, 10))
    finally:
        store.conn.set_trace_callback(None)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) <= 1 + 3 * 4, "per lane (3 weights): its head and at most 3 probes for the next"
    for query in queries:
        plan = " | ".join(row["detail"] for row in store.conn.execute("EXPLAIN QUERY PLAN " + query))
        assert "jobs_lanes" in plan
        assert "TEMP B-TREE" not in plan


# ---- assign, run, finish (fencing) ------------------------------------------------------------------


def test_assign_job_returns_the_attempt_and_what_the_worker_needs(store: Store) -> None:
    job_id = add(store, engine="ffmpeg", labels={"k": "v"}, timeout="30s")
    work = store.assign_job(job_id, "n1", T0 + 1)
    assert work == {"attempt": 1, "scenario": "test1", "engine": "ffmpeg", "queue": "default",
                    "priority": "medium", "params": spec().params, "labels": {"k": "v"}, "timeout": 30.0,
                    "tenant": ""}
    job = store.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"], job["node"]) == ("assigned", 1, "n1")
    assert store.job_attempts(job_id)[0]["status"] == "assigned"
    assert history_statuses(store, job_id) == ["pending", "assigned"]


def test_second_assign_of_the_same_job_raises_not_found(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    with pytest.raises(NotFound):
        store.assign_job(job_id, "n2", T0)
    job = store.get_job(job_id)
    assert job is not None and (job["attempts"], job["node"]) == (1, "n1")


def test_assign_unknown_job_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.assign_job("0" * 32, "n1", T0)


def test_mark_running(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    assert store.mark_running(job_id, 1, T0 + 2)
    job = store.get_job(job_id)
    assert job is not None and (job["status"], job["started_at"]) == ("running", T0 + 2)
    assert store.job_attempts(job_id)[0]["status"] == "running"
    assert not store.mark_running(job_id, 1, T0 + 3), "already running"


def test_mark_running_with_stale_attempt_changes_nothing(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    assert not store.mark_running(job_id, 2, T0 + 1)
    assert not store.mark_running(job_id, 0, T0 + 1)
    job = store.get_job(job_id)
    assert job is not None and (job["status"], job["started_at"]) == ("assigned", None)
    assert history_statuses(store, job_id) == ["pending", "assigned"]


def test_finish_job_records_completion_exactly_once(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.mark_running(job_id, 1, T0 + 1)
    assert store.finish_job(job_id, 1, "completed", T0 + 5, metrics={"frames": 90}, output="out.mp4")
    assert not store.finish_job(job_id, 1, "completed", T0 + 6)
    assert not store.finish_job(job_id, 1, "failed", T0 + 7, error="late")
    job = store.get_job(job_id)
    assert job is not None
    assert (job["status"], job["progress"], job["finished_at"]) == ("completed", 1.0, T0 + 5)
    assert (job["metrics"], job["output"], job["error"]) == ({"frames": 90}, "out.mp4", None)
    assert history_statuses(store, job_id).count("completed") == 1
    assert store.job_attempts(job_id)[0]["status"] == "completed"


def test_finish_job_from_assigned_sets_started_at(store: Store) -> None:
    job_id = add(store, engine="null")
    store.assign_job(job_id, "n1", T0)
    assert store.finish_job(job_id, 1, "completed", T0 + 1)
    job = store.get_job(job_id)
    assert job is not None and job["started_at"] == T0 + 1


def test_finish_job_with_stale_attempt_changes_nothing(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.requeue_job(job_id, 1, T0 + 1, failure="worker_lost", error="gone", not_before=T0 + 1, avoid="n1")
    store.assign_job(job_id, "n2", T0 + 2)
    assert not store.finish_job(job_id, 1, "completed", T0 + 3)
    job = store.get_job(job_id)
    assert job is not None and (job["status"], job["attempts"], job["node"]) == ("assigned", 2, "n2")
    assert "completed" not in history_statuses(store, job_id)


def test_finish_job_failed_records_the_error(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    assert store.finish_job(job_id, 1, "failed", T0 + 1, error="bad input", failure="invalid_input")
    job = store.get_job(job_id)
    assert job is not None and (job["status"], job["error"], job["failure"]) == ("failed", "bad input",
                                                                                  "invalid_input")
    assert job["progress"] is None
    assert store.job_history(job_id)[-1]["reason"] == "bad input"


def test_record_progress_is_fenced(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    assert store.record_progress(job_id, 1, 0.5, {"fps": 30})
    assert not store.record_progress(job_id, 2, 0.9, {"fps": 1})
    job = store.get_job(job_id)
    assert job is not None and (job["progress"], job["metrics"]) == (0.5, {"fps": 30})


# ---- requeue ----------------------------------------------------------------------------------------


def test_requeue_job_back_to_pending_with_not_before_and_avoid(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.mark_running(job_id, 1, T0 + 1)
    assert store.requeue_job(job_id, 1, T0 + 2, failure="encoder_error", error="boom", not_before=T0 + 12,
                             avoid="n1")
    job = store.get_job(job_id)
    assert job is not None
    assert (job["status"], job["node"], job["not_before"], job["avoid"]) == ("pending", None, T0 + 12, ["n1"])
    assert (job["error"], job["failure"], job["attempts"]) == ("boom", "encoder_error", 1)
    assert store.job_attempts(job_id)[0]["status"] == "failed"
    last = store.job_history(job_id)[-1]
    assert last["status"] == "pending" and "encoder_error: boom" in last["reason"] and "retry in 10s" in last["reason"]
    assert candidate_ids(store, now=T0 + 11) == []
    (candidate,) = store.pending_candidates(T0 + 12, 10)
    assert candidate["avoid"] == ["n1"]


def test_requeue_adds_each_node_to_avoid_once(store: Store) -> None:
    job_id = add(store)
    for attempt, name in enumerate(["n1", "n2", "n1"], start=1):
        store.assign_job(job_id, name, T0)
        assert store.requeue_job(job_id, attempt, T0, failure="timeout", error=None, not_before=T0, avoid=name)
    job = store.get_job(job_id)
    assert job is not None and job["avoid"] == ["n1", "n2"] and job["attempts"] == 3


def test_requeue_with_stale_attempt_changes_nothing(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    assert not store.requeue_job(job_id, 2, T0, failure="timeout", error=None, not_before=T0, avoid="n1")
    assert status(store, job_id) == "assigned"


def test_requeue_of_pending_job_changes_nothing(store: Store) -> None:
    job_id = add(store)
    assert not store.requeue_job(job_id, 0, T0, failure="timeout", error=None, not_before=T0)


# ---- cancel and retry -------------------------------------------------------------------------------


def test_cancel_pending_job(store: Store) -> None:
    job_id = add(store)
    before = store.cancel_job(job_id, T0 + 1)
    assert before is not None and before["status"] == "pending"
    job = store.get_job(job_id)
    assert job is not None
    assert (job["status"], job["finished_at"], job["failure"]) == ("canceled", T0 + 1, "canceled")
    assert candidate_ids(store) == []
    assert store.cancel_job(job_id, T0 + 2) is None
    assert history_statuses(store, job_id) == ["pending", "canceled"]


def test_cancel_assigned_job_and_a_late_completion_changes_nothing(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    before = store.cancel_job(job_id, T0 + 1, reason="operator")
    assert before is not None and (before["status"], before["attempts"], before["node"]) == ("assigned", 1, "n1")
    assert store.job_attempts(job_id)[0]["status"] == "canceled"
    assert not store.mark_running(job_id, 1, T0 + 2)
    assert not store.finish_job(job_id, 1, "completed", T0 + 3)
    job = store.get_job(job_id)
    assert job is not None and (job["status"], job["error"]) == ("canceled", "operator")
    assert history_statuses(store, job_id) == ["pending", "assigned", "canceled"]
    assert store.active_attempts() == []


def test_cancel_finished_or_unknown_job_returns_none(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.finish_job(job_id, 1, "completed", T0 + 1)
    assert store.cancel_job(job_id, T0 + 2) is None
    assert status(store, job_id) == "completed"
    assert store.cancel_job("f" * 32, T0) is None


def test_retry_job_only_from_failed_or_canceled(store: Store) -> None:
    pending = add(store)
    assert not store.retry_job(pending, T0)

    done = add(store)
    store.assign_job(done, "n1", T0)
    assert not store.retry_job(done, T0), "assigned"
    store.finish_job(done, 1, "completed", T0)
    assert not store.retry_job(done, T0), "completed"

    failed = add(store, max_retries=2)
    store.assign_job(failed, "n1", T0)
    store.finish_job(failed, 1, "failed", T0, error="boom", failure="encoder_error")
    assert store.retry_job(failed, T0 + 1)
    job = store.get_job(failed)
    assert job is not None
    assert (job["status"], job["error"], job["failure"], job["finished_at"], job["node"]) == (
        "pending", None, None, None, None)
    assert job["max_retries"] == 3, "the retry budget is renewed"
    assert history_statuses(store, failed)[-1] == "pending"

    canceled = add(store)
    store.cancel_job(canceled, T0)
    assert store.retry_job(canceled, T0 + 1)
    assert status(store, canceled) == "pending"
    assert not store.retry_job("0" * 32, T0)


def test_retried_job_gets_a_new_attempt_number(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.finish_job(job_id, 1, "failed", T0)
    store.retry_job(job_id, T0)
    assert store.assign_job(job_id, "n1", T0)["attempt"] == 2
    assert not store.finish_job(job_id, 1, "completed", T0)


# ---- job ids ----------------------------------------------------------------------------------------


@pytest.fixture
def fixed_ids(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ids = ["abc" + "0" * 29, "abc" + "1" * 29, "def" + "2" * 29]
    values = iter(ids)
    monkeypatch.setattr(store, "new_job_id", lambda: next(values))
    return ids


def test_resolve_job_id(store: Store, fixed_ids: list[str]) -> None:
    assert store.insert_jobs([spec(), spec(), spec()], T0, 3) == fixed_ids
    assert store.resolve_job_id(fixed_ids[0]) == fixed_ids[0]
    assert store.resolve_job_id(fixed_ids[0].upper()) == fixed_ids[0]
    assert store.resolve_job_id("d") == fixed_ids[2]
    assert store.resolve_job_id(" abc1 ") == fixed_ids[1]


def test_resolve_ambiguous_prefix_is_invalid_input(store: Store, fixed_ids: list[str]) -> None:
    store.insert_jobs([spec(), spec(), spec()], T0, 3)
    with pytest.raises(InvalidInput) as info:
        store.resolve_job_id("abc")
    assert info.value.field == "id"


@pytest.mark.parametrize("prefix", ["", "   ", "xyz", "abc-0", "abcg", "'; DROP TABLE jobs; --", "%", "a_c",
                                    "ab" * 17, "fff", "abc2"])
def test_resolve_non_hex_or_unknown_is_not_found(store: Store, fixed_ids: list[str], prefix: str) -> None:
    store.insert_jobs([spec(), spec(), spec()], T0, 3)
    with pytest.raises(NotFound):
        store.resolve_job_id(prefix)


# ---- logs -------------------------------------------------------------------------------------------


def test_append_and_read_logs(store: Store) -> None:
    job_id = add(store)
    store.append_logs(job_id, 1, [(1, T0, "stderr", "a1"), (2, T0, "stderr", "a2")])
    store.append_logs(job_id, 2, [(1, T0, "stdout", "b1"), (2, T0, "stderr", "b2"), (3, T0, "stderr", "b3")])
    store.append_logs(add(store), 1, [(1, T0, "stderr", "other job")])
    lines = store.job_logs(job_id)
    assert [line["line"] for line in lines] == ["a1", "a2", "b1", "b2", "b3"]
    assert lines[2] == {"attempt": 2, "seq": 1, "at": T0, "stream": "stdout", "line": "b1"}


def test_job_logs_tail_and_attempt(store: Store) -> None:
    job_id = add(store)
    store.append_logs(job_id, 1, [(i, T0, "stderr", f"a{i}") for i in range(1, 4)])
    store.append_logs(job_id, 2, [(i, T0, "stderr", f"b{i}") for i in range(1, 4)])
    assert [x["line"] for x in store.job_logs(job_id, tail=4)] == ["a3", "b1", "b2", "b3"]
    assert [x["line"] for x in store.job_logs(job_id, attempt=1)] == ["a1", "a2", "a3"]
    assert [x["line"] for x in store.job_logs(job_id, attempt=1, tail=2)] == ["a2", "a3"]
    assert [x["line"] for x in store.job_logs(job_id, tail=100)] == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert store.job_logs(job_id, attempt=3) == []
    assert store.job_logs("0" * 32) == []


def test_job_logs_ordered_by_seq_not_insertion(store: Store) -> None:
    job_id = add(store)
    store.append_logs(job_id, 1, [(2, T0, "stderr", "second"), (1, T0, "stderr", "first")])
    assert [x["line"] for x in store.job_logs(job_id)] == ["first", "second"]


# ---- nodes ------------------------------------------------------------------------------------------


def node_row(name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "fingerprint": f"fp-{name}", "status": "online", "version": "0.1.0", "slots": 2,
            "engines": ["ffmpeg", "null"], "encoders": {"libx264": {"codec": "h264"}}, "labels": {"zone": "eu"},
            "resources": {"cpu": 4}, **changes}


def test_upsert_and_get_node(store: Store) -> None:
    store.upsert_node(node_row("w1"), T0)
    node = store.get_node("w1")
    assert node is not None
    assert {k: node[k] for k in node_row("w1")} == node_row("w1")
    assert (node["first_seen"], node["last_seen"]) == (T0, T0)
    assert store.get_node("nope") is None


def test_upsert_node_updates_but_keeps_first_seen(store: Store) -> None:
    store.upsert_node(node_row("w1"), T0)
    store.upsert_node(node_row("w1", slots=8, engines=["gstreamer"], labels={}), T0 + 10)
    node = store.get_node("w1")
    assert node is not None
    assert (node["slots"], node["engines"], node["labels"]) == (8, ["gstreamer"], {})
    assert (node["first_seen"], node["last_seen"]) == (T0, T0 + 10)
    assert len(store.list_nodes()) == 1


def test_list_nodes_sorted_by_name(store: Store) -> None:
    for name in ("w2", "w10", "a1"):
        store.upsert_node(node_row(name), T0)
    assert [n["name"] for n in store.list_nodes()] == ["a1", "w10", "w2"]


def test_update_node(store: Store) -> None:
    store.upsert_node(node_row("w1"), T0)
    store.update_node("w1", status="offline", last_seen=T0 + 5)
    store.update_node("w1", resources={"cpu": 8})
    node = store.get_node("w1")
    assert node is not None
    assert (node["status"], node["last_seen"], node["resources"]) == ("offline", T0 + 5, {"cpu": 8})


# ---- active attempts, status counts -----------------------------------------------------------------


def test_active_attempts(store: Store) -> None:
    a, b, c = (add(store) for _ in range(3))
    store.assign_job(a, "n1", T0)
    store.assign_job(b, "n2", T0 + 1)
    store.mark_running(b, 1, T0 + 2)
    store.assign_job(c, "n1", T0)
    store.finish_job(c, 1, "completed", T0 + 3)
    active = sorted(store.active_attempts(), key=lambda row: row["job_id"] == b)
    keys = ("job_id", "attempt", "node", "status", "assigned_at")
    assert [{k: row[k] for k in keys} for row in active] == [
        {"job_id": a, "attempt": 1, "node": "n1", "status": "assigned", "assigned_at": T0},
        {"job_id": b, "attempt": 1, "node": "n2", "status": "running", "assigned_at": T0 + 1},
    ]
    assert all(row["queue"] == "default" and isinstance(row["params"], dict) for row in active)


def test_active_attempts_excludes_requeued_ones(store: Store) -> None:
    job_id = add(store)
    store.assign_job(job_id, "n1", T0)
    store.requeue_job(job_id, 1, T0, failure="worker_lost", error=None, not_before=T0)
    assert store.active_attempts() == []


def test_status_counts_and_pending_by_engine(store: Store) -> None:
    ids = [add(store, engine=engine) for engine in ("auto", "auto", "null", "ffmpeg")]
    store.assign_job(ids[3], "n1", T0)
    assert store.status_counts() == {"pending": 3, "assigned": 1}
    assert store.pending_by_engine() == {"auto": 2, "null": 1}


def test_list_jobs_filters_newest_first(store: Store) -> None:
    ids = [add(store, queue=q) for q in ("live", "batch", "live")]
    store.assign_job(ids[0], "n1", T0)
    assert [j["id"] for j in store.list_jobs()] == ids[::-1]
    assert [j["id"] for j in store.list_jobs(queue="live")] == [ids[2], ids[0]]
    assert [j["id"] for j in store.list_jobs(status="assigned", node="n1")] == [ids[0]]
    assert [j["id"] for j in store.list_jobs(limit=1)] == [ids[2]]


# ---- durability and transactions --------------------------------------------------------------------


def test_data_survives_reopening_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.db"
    first = Store(path)
    job_id = first.insert_jobs([spec()], T0, 3)[0]
    first.upsert_node(node_row("w1"), T0)
    first.close()
    for _ in range(2):
        again = Store(path)
        try:
            assert status(again, job_id) == "pending"
            assert again.get_node("w1") is not None
            applied = again.conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
            assert [row["name"] for row in applied] == ["m001_initial", "m002_log_accounting", "m003_keys_and_tenants",
                                                             "m004_tenant_listing",
                                                             "m005_attempts_and_history_by_seq",
                                                             "m006_key_scopes",
                                                             "m007_submit_keys", "m008_dispatch_lanes",
                                                             "m009_leader_lease"]
        finally:
            again.close()


def test_m005_rekeys_an_existing_stores_attempts_and_history(tmp_path: Path) -> None:
    """A store written before m005 (attempts and history keyed by job id) keeps all of both after it."""
    import sqlite3

    import sqlite_utils

    from ffrtmp.master.store.schema import MIGRATIONS

    path = tmp_path / "master.db"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m005_attempts_and_history_by_seq")
    for seq, job_id in ((1, "a" * 32), (2, "b" * 32)):
        conn.execute("INSERT INTO jobs (seq, id, status, scenario, queue, priority, weight, engine, params,"
                     " max_retries, created_at, attempts, node) VALUES (?, ?, 'running', 's', 'default', 'medium',"
                     " 2, 'null', '{}', 3, ?, 1, 'w1')", (seq, job_id, T0))
        conn.execute("INSERT INTO attempts (job_id, attempt, node, status, assigned_at) VALUES (?, 1, 'w1',"
                     " 'running', ?)", (job_id, T0 + seq))
        for status in ("pending", "assigned", "running"):
            conn.execute("INSERT INTO history (job_id, at, status, reason) VALUES (?, ?, ?, 'r')",
                         (job_id, T0 + seq, status))
    conn.close()
    store = Store(path)
    try:
        for seq, job_id in ((1, "a" * 32), (2, "b" * 32)):
            assert [h["status"] for h in store.job_history(job_id)] == ["pending", "assigned", "running"]
            (attempt,) = store.job_attempts(job_id)
            assert (attempt["job_id"], attempt["assigned_at"], attempt["status"]) == (job_id, T0 + seq, "running")
        assert sorted(a["job_id"] for a in store.active_attempts()) == ["a" * 32, "b" * 32]
    finally:
        store.close()


def test_transaction_commits(store: Store, tmp_path: Path) -> None:
    with store.transaction():
        job_id = add(store)
    other = Store(tmp_path / "master.db")
    try:
        assert other.get_job(job_id) is not None
    finally:
        other.close()


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    kept = add(store)
    with pytest.raises(RuntimeError), store.transaction():
        add(store)
        store.assign_job(kept, "n1", T0)
        raise RuntimeError("boom")
    assert [job["id"] for job in store.list_jobs()] == [kept]
    assert status(store, kept) == "pending"
    assert store.job_attempts(kept) == []
    with store.transaction():
        add(store)
    assert len(store.list_jobs()) == 2


def test_nested_transaction_joins_the_outer_one(store: Store) -> None:
    with pytest.raises(ValueError), store.transaction():
        add(store)
        with store.transaction():
            add(store)
        raise ValueError("outer fails")
    assert store.list_jobs() == []


def test_exception_in_nested_transaction_rolls_back_everything(store: Store) -> None:
    with pytest.raises(KeyError), store.transaction():
        add(store)
        with store.transaction():
            add(store)
            raise KeyError("inner")
    assert store.list_jobs() == []
    with store.transaction():
        add(store)
    assert len(store.list_jobs()) == 1


def test_many_jobs_keep_unique_ids(store: Store) -> None:
    ids = store.insert_jobs(itertools.repeat(spec(), 200), T0, 3)
    assert len(set(ids)) == 200
    assert store.status_counts() == {"pending": 200}


def test_assign_jobs_assigns_many_at_once_and_fences_on_the_attempt_count(store: Store) -> None:
    ids = [add(store) for _ in range(3)]
    picks = [(job, f"n{i}") for i, job in enumerate(store.pending_candidates(T0, 10))]
    assert store.assign_jobs(picks, T0) == [1, 1, 1]
    assert [store.get_job(i)["node"] for i in ids] == ["n0", "n1", "n2"]
    assert [a["attempt"] for i in ids for a in store.job_attempts(i)] == [1, 1, 1]
    assert [h["status"] for h in store.job_history(ids[0])] == ["pending", "assigned"]
    with pytest.raises(NotFound):
        store.assign_jobs(picks, T0)  # the same (stale) rows again: nothing is pending with those counts


def test_listings_walk_an_index_in_order_without_sorting(store: Store) -> None:
    """`jobs list` stays fast on a million jobs: every filter combination has an index in `seq` order."""
    store.insert_jobs([spec() for _ in range(20)], T0, 3, tenant="acme")
    for status, tenant in ((None, None), ("pending", None), (None, "acme"), ("pending", "acme")):
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        try:
            store.list_jobs(status=status, tenant=tenant, limit=5)
        finally:
            store.conn.set_trace_callback(None)
        query = statements[-1]
        plan = " | ".join(row["detail"] for row in store.conn.execute("EXPLAIN QUERY PLAN " + query))
        assert "TEMP B-TREE" not in plan, (status, tenant, plan)


def test_status_counts_follow_every_transition_without_recounting(store: Store) -> None:
    import random

    rng = random.Random(3)
    ids = store.insert_jobs([spec(queue=rng.choice(["live", "batch"]), priority=rng.choice(["high", "low"]))
                             for _ in range(40)], T0, 3)
    store.status_counts()  # counted once here; from now on kept up to date
    store.pending_by_queue()
    for _ in range(300):
        job_id = rng.choice(ids)
        job = store.get_job(job_id)
        assert job is not None
        attempt, status = job["attempts"], job["status"]
        with store.transaction():
            if status == "pending" and rng.random() < 0.5:
                store.assign_job(job_id, "n1", T0)
            elif status == "assigned":
                choice = rng.randrange(3)
                if choice == 0:
                    store.mark_running(job_id, attempt, T0)
                elif choice == 1:
                    store.finish_job(job_id, attempt, "completed", T0, started_at=T0)
                else:
                    store.requeue_job(job_id, attempt, T0, failure="worker_lost", error=None, not_before=T0)
            elif status == "running":
                if rng.random() < 0.5:
                    store.finish_job(job_id, attempt, "failed", T0, error="x")
                else:
                    store.cancel_job(job_id, T0)
            elif status in ("failed", "canceled"):
                store.retry_job(job_id, T0)
            elif status == "pending":
                store.cancel_job(job_id, T0)
    kept = store.status_counts()
    recounted = {row["status"]: row["n"] for row in
                 store.conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status")}
    assert kept == recounted
    depth: dict[str, dict[str, int]] = {}
    for row in store.conn.execute("SELECT queue, priority, count(*) FROM jobs WHERE status = 'pending'"
                                  " GROUP BY queue, priority"):
        depth.setdefault(row[0], {})[row[1]] = row[2]
    assert store.pending_by_queue() == depth


def test_a_rolled_back_transition_is_recounted(store: Store) -> None:
    job_id = add(store)
    assert store.status_counts() == {"pending": 1}
    with pytest.raises(RuntimeError), store.transaction():
        store.assign_job(job_id, "n1", T0)
        raise RuntimeError("boom")
    assert store.status_counts() == {"pending": 1}
