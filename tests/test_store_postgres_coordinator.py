"""The coordinator on PostgreSQL: today's coordinator, lifecycle, recovery and log tests, with every master they
build (`tests.test_coordinator.Cluster`) keeping its state in a fresh PostgreSQL schema instead of an SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from ffrtmp.master.store.postgres_reader import PostgresReader
from tests import (
    test_activity,
    test_clock_steps,
    test_coordinator,
    test_follow_limits,
    test_lifecycle,
    test_log_acks,
    test_logs,
    test_operations,
    test_placement,
    test_preauth,
    test_prefetch,
    test_protocol_mismatch,
    test_publish,
    test_recovery,
    test_retention,
)

SQLITE_ONLY = {
    "test_lines_whose_write_failed_are_not_acknowledged_and_are_taken_when_resent",  # an SQLite trigger (ported below)
    "test_log_lines_in_a_batch_rolled_back_by_a_full_store_are_taken_when_sent_again",  # SQLite's page cap
}
"""Tests that reach into SQLite itself."""

MODULES = (test_coordinator, test_lifecycle, test_recovery, test_logs, test_retention, test_placement, test_log_acks,
           test_operations, test_clock_steps, test_follow_limits, test_activity, test_preauth, test_publish,
           test_prefetch, test_protocol_mismatch)

for module in MODULES:
    globals().update({name: value for name, value in vars(module).items()
                      if (name.startswith("test_") and name not in SQLITE_ONLY)
                      or hasattr(value, "_fixture_function_marker")})  # the fixtures those tests take


@pytest.fixture(autouse=True)
def masters_on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    opened: list[PostgresStore] = []

    def on_postgres(path: str | Path, **_: Any) -> PostgresStore:
        opened.append(open_postgres_store(postgres_url))
        return opened[-1]

    # Every module's tests build their masters through test_coordinator's `Cluster`, which opens `SqliteStore`.
    monkeypatch.setattr(test_coordinator, "SqliteStore", on_postgres)
    readers: list[PostgresReader] = []
    reader = PostgresStore.reader

    def tracked(store: PostgresStore) -> PostgresReader:
        readers.append(reader(store))  # the tests written for SQLite leave their metrics readers open
        return readers[-1]

    monkeypatch.setattr(PostgresStore, "reader", tracked)
    yield
    for db in [*readers, *opened]:
        db.close()


def test_lines_whose_write_failed_are_not_acknowledged_and_are_taken_when_resent_on_postgres(tmp_path: Path) -> None:
    """The trigger test of test_log_acks, with a PostgreSQL trigger refusing the lines' insert."""
    from tests.test_log_acks import acks, log, stored

    cluster = test_coordinator.Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one")
    acks(cluster, b"w1")
    cluster.store.conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                               " $$BEGIN RAISE EXCEPTION 'disk I/O'; END$$")
    cluster.store.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON logs FOR EACH ROW EXECUTE FUNCTION refuse()")
    log(cluster, b"w1", job_id, 1, "two", "three", first_seq=2)
    assert acks(cluster, b"w1") == [], "not stored, so not acknowledged"
    cluster.store.conn.execute("DROP TRIGGER refuse ON logs")
    log(cluster, b"w1", job_id, 1, "two", "three", first_seq=2)  # the worker sends them again
    assert stored(cluster, job_id) == [(1, "one"), (2, "two"), (3, "three")]
    assert acks(cluster, b"w1") == [[job_id, 1, 3]]
