"""The SQLite backend's own parts: query plans, migrations of old files, lazy savepoints, the reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import JobSpec, validate_submission
from ffrtmp.master.store import SqliteStore, StoreUnreachable, open_store

T0 = 1_700_000_000.0


def spec(**options: Any) -> JobSpec:
    return validate_submission({"scenario": "test1", **options})


def status(store: SqliteStore, job_id: str) -> str:
    job = store.get_job(job_id)
    assert job is not None
    return str(job["status"])


def node_row(name: str) -> dict[str, Any]:
    return {"name": name, "fingerprint": f"fp-{name}", "status": "online", "version": "0.1.0", "slots": 2,
            "engines": ["ffmpeg"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path / "master.db")
    yield db
    db.close()


def test_dispatch_queries_use_the_lanes_index(store: SqliteStore) -> None:
    """The dispatch queries must walk `jobs_lanes` in order, not sort every pending job (docs/design.md)."""
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
    store = SqliteStore(path)
    try:
        for seq, job_id in ((1, "a" * 32), (2, "b" * 32)):
            assert [h["status"] for h in store.job_history(job_id)] == ["pending", "assigned", "running"]
            (attempt,) = store.job_attempts(job_id)
            assert (attempt["job_id"], attempt["assigned_at"], attempt["status"]) == (job_id, T0 + seq, "running")
        assert sorted(a["job_id"] for a in store.active_attempts()) == ["a" * 32, "b" * 32]
    finally:
        store.close()


def test_listings_walk_an_index_in_order_without_sorting(store: SqliteStore) -> None:
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


def savepoints_issued(store: SqliteStore, run: Any) -> int:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        run()
    finally:
        store.conn.set_trace_callback(None)
    return sum(1 for s in statements if s.startswith("SAVEPOINT"))


def test_a_savepoint_costs_a_statement_only_when_its_block_writes(store: SqliteStore) -> None:
    job_id = store.insert_jobs([spec()], T0, 3)[0]

    def batch() -> None:
        with store.transaction():
            for _ in range(100):  # a batch of messages that only read (results are gathered, requests read)
                with store.savepoint():
                    store.get_job(job_id)
                    store.status_counts()
            with store.savepoint():
                store.record_progress(job_id, 0, 0.5, {})  # the one that writes

    assert savepoints_issued(store, batch) == 1


def test_a_block_that_only_read_has_nothing_to_undo(store: SqliteStore) -> None:
    job_id = store.insert_jobs([spec()], T0, 3)[0]
    with store.transaction():
        with pytest.raises(RuntimeError), store.savepoint():
            store.get_job(job_id)
            raise RuntimeError("a bug before any write")
        store.assign_job(job_id, "n1", T0)
    assert status(store, job_id) == "assigned"


def test_a_savepoint_outside_a_transaction_still_undoes_its_writes(store: SqliteStore) -> None:
    with pytest.raises(RuntimeError), store.savepoint():
        store.insert_jobs([spec()], T0, 3)
        raise RuntimeError("boom")
    assert store.list_jobs() == []
    assert not store.conn.in_transaction


# ---- the factory, the directory and the reader ------------------------------------------------------


def test_open_store_takes_a_path_and_refuses_a_postgres_url_without_its_backend(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "a" / "master.db"), 0)
    try:
        assert isinstance(store, SqliteStore) and store.directory == str(tmp_path / "a")
    finally:
        store.close()
    for url in ("postgresql://u:secret@db.example/ffrtmp", "postgres://db.example/ffrtmp"):
        try:
            import ffrtmp.master.store.postgres  # noqa: F401
        except ImportError:
            with pytest.raises(InvalidInput) as caught:
                open_store(url)
            scheme = url.split("://")[0]
            assert str(caught.value) == (f"db: {scheme}://… needs the PostgreSQL backend: "
                                         "pip install 'ffrtmp[postgres]'")
            assert "secret" not in str(caught.value)
        else:
            pytest.skip("the PostgreSQL backend is installed here")


def test_a_memory_store_has_no_directory_to_watch() -> None:
    store = SqliteStore(":memory:")
    try:
        assert store.directory is None
    finally:
        store.close()


def test_the_reader_reports_a_missing_file_as_unreachable_and_recovers(store: SqliteStore, tmp_path: Path) -> None:
    reader = store.reader()
    reader.path = str(tmp_path / "missing.db")
    with pytest.raises(StoreUnreachable):
        reader.ping()
    reader.path = store.path
    reader.ping()  # the failed connection was dropped and a new one opened
    reader.close()


def test_data_survives_reopening_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "master.db"
    first = SqliteStore(path)
    job_id = first.insert_jobs([spec()], T0, 3)[0]
    first.close()
    for _ in range(2):
        again = SqliteStore(path)
        try:
            assert status(again, job_id) == "pending"
            applied = again.conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
            assert [row["name"] for row in applied] == ["m001_initial", "m002_log_accounting", "m003_keys_and_tenants",
                                                        "m004_tenant_listing", "m005_attempts_and_history_by_seq",
                                                        "m006_key_scopes", "m007_submit_keys", "m008_dispatch_lanes",
                                                        "m009_leader_lease", "m010_files"]
        finally:
            again.close()


def test_a_coordinator_batch_of_results_issues_a_few_savepoints_not_one_per_message(tmp_path: Path) -> None:
    """The master guards each message with a savepoint; on a worker's batch of 200 results only the
    frame's one write of all endings (and the dispatch pass, when it writes) issues one."""
    from ffrtmp.protocol import Kind, encode_batch
    from tests.test_coordinator import Cluster

    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha", slots=200)
    reply = cluster.request("submit", {"jobs": [{"scenario": "t", "engine": "null"}] * 200})
    ids = reply["body"]["ids"]
    assert {m.body["job"] for m in cluster.net.take(b"w1", Kind.JOB)} == set(ids)
    conn = cluster.store.conn
    opened, issued = conn.opened, conn.issued
    results = [(Kind.RESULT, {"job": job_id, "attempt": 1, "status": "completed", "at": cluster.now,
                              "started_at": cluster.now}) for job_id in ids]
    cluster.coordinator.handle_batch([(b"w1", encode_batch(results))], cluster.now)
    assert cluster.store.status_counts() == {"completed": 200}
    assert conn.opened - opened >= 200, "every message is still guarded"
    assert conn.issued - issued <= 2, "but only blocks that write issue a SAVEPOINT"


def test_the_postgres_factory_of_the_contract_suite_skips_where_it_cannot_run(tmp_path: Path) -> None:
    import importlib.util

    from tests.store_backends import postgres_store

    if importlib.util.find_spec("ffrtmp.master.store.postgres") is not None:
        pytest.skip("the PostgreSQL backend is installed here: the contract suite runs it")
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL backend is not installed"):
        postgres_store(tmp_path)
