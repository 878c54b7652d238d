"""The PostgreSQL store beside the contract suite (test_store.py runs on both backends through
tests/store_backends.py): the tests of test_dispatch_lanes.py and test_submit_idempotency.py that go through
the store, run again with `store` (and the coordinator tests' `SqliteStore`) bound to a `PostgresStore` on a
fresh schema; SQLite-only tests the PostgreSQL way; and both backends checked against the `Store` protocol.
Left out: the tests that look inside SQLite itself (its query plans, trace and progress callbacks, its
migration ledger and files).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store import SqliteStore, Store, open_store
from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from tests import test_dispatch_lanes, test_store, test_submit_idempotency

SQLITE_ONLY = {
    # SQLite's query plans, trace callback or progress handler:
    "test_dispatch_queries_use_the_lanes_index", "test_listings_walk_an_index_in_order_without_sorting",
    "test_a_pass_costs_the_same_with_60_or_6000_unplaceable_jobs",
    "test_the_wait_reason_of_a_group_is_not_rewritten_every_pass",
    "test_new_jobs_of_a_waiting_group_get_its_reason_at_the_next_pass_and_only_they_are_written",
    "test_a_pass_costs_the_same_with_60_or_6000_runnable_jobs_in_its_lanes",
    # SQLite's migration ledger (ported below where the idea applies):
    "test_the_migration_fills_needs_for_jobs_stored_before_it",
}
STORE_ONLY = {  # test_submit_idempotency's tests of the store; the others run real masters on SQLite files
    "test_a_repeated_key_gets_the_first_ids_and_creates_nothing",
    "test_a_key_reused_for_another_submission_is_refused_naming_the_field",
    "test_keys_survive_a_master_restart_and_are_forgotten_after_their_ttl",
}


def _contract(module: Any, keep: Callable[[str], bool]) -> dict[str, Any]:
    return {name: getattr(module, name) for name in dir(module)
            if name.startswith("test_") and name not in SQLITE_ONLY and keep(name)}


globals().update(_contract(test_dispatch_lanes, lambda name: True))
globals().update(_contract(test_submit_idempotency, lambda name: name in STORE_ONLY))


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    db = open_postgres_store(postgres_url)
    yield db
    db.close()


@pytest.fixture(autouse=True)
def coordinator_on_postgres(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The coordinator tests' `Cluster` (and a restarted master) open the test's PostgreSQL database."""
    if "store" in request.fixturenames or "postgres_url" in request.fixturenames:
        yield
        return
    url: str = request.getfixturevalue("postgres_url")
    opened: list[PostgresStore] = []

    def on_postgres(path: str | Path, **_: Any) -> PostgresStore:
        opened.append(open_postgres_store(url))
        return opened[-1]

    monkeypatch.setattr("tests.test_coordinator.SqliteStore", on_postgres)
    monkeypatch.setattr("tests.test_submit_idempotency.SqliteStore", on_postgres)
    yield
    for db in opened:
        db.close()


# ---- the SQLite-only tests, the PostgreSQL way ------------------------------------------------------------

T0 = test_store.T0


def test_data_survives_reopening_and_migrations_run_once(postgres_url: str) -> None:
    first = open_postgres_store(postgres_url)
    job_id = first.insert_jobs([test_store.spec()], T0, 3)[0]
    first.upsert_node(test_store.node_row("w1"), T0)
    first.close()
    for _ in range(2):
        again = open_postgres_store(postgres_url)
        try:
            assert test_store.status(again, job_id) == "pending"
            assert again.get_node("w1") is not None
            applied = again.conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
            assert [(row["version"], row["name"]) for row in applied] == [(1, "initial"), (2, "leadership"),
                                                                          (3, "files")]
        finally:
            again.close()


def test_both_backends_have_every_method_and_attribute_of_the_store_protocol() -> None:
    """At run time; ffrtmp/master/store/conformance.py makes mypy check the same, with the types."""
    declared = [name for name in dir(Store) if not name.startswith("_")]
    assert {"had_api_keys", "reader", "directory", "granted_lanes", "insert_jobs"} <= set(declared)
    for backend in (SqliteStore, PostgresStore):
        missing = [name for name in declared if name not in ("on_commit", "path") and not hasattr(backend, name)]
        assert not missing, f"{backend.__name__} lacks {missing}"
        for name in declared:
            member = getattr(Store, name)
            if callable(member) and name not in ("on_commit", "path"):
                assert (list(inspect.signature(getattr(backend, name)).parameters)
                        == list(inspect.signature(member).parameters)), f"{backend.__name__}.{name}"


def test_a_postgresql_store_has_no_local_directory_and_a_reader_of_its_own(store: PostgresStore) -> None:
    assert store.directory is None
    assert store.path == store.shown and store.on_commit is None
    reader = store.reader()
    try:
        store.insert_jobs([test_store.spec()], T0, 3)
        assert reader.job_counts() == ({"pending": 1}, {("default", "medium"): 1})
        assert reader.conn is not None and reader.conn is not store._conn  # never the coordinator's connection
    finally:
        reader.close()


def test_what_is_shown_of_the_store_never_holds_its_password(postgres_url: str) -> None:
    head, rest = postgres_url.split("://", 1)
    user, at, place = rest.partition("@")
    if not at or ":" in user:
        pytest.skip("the test server's URL names no plain user to add a password to")
    url = f"{head}://{user}:s3cret@{place}"  # trust auth here: the password is sent and ignored
    store = open_store(url)
    try:
        assert store.path == f"{head}://{user}:***@{place}"
    finally:
        store.close()
    with pytest.raises(InvalidInput) as refused:
        open_store(f"{head}://{user}:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(refused.value) and ":***@127.0.0.1:1/none" in str(refused.value)
