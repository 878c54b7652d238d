"""The coordinator on PostgreSQL: today's coordinator, lifecycle, recovery and log tests, with every master they
build (`tests.test_coordinator.Cluster`) keeping its state in a fresh PostgreSQL schema instead of an SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from tests import test_coordinator, test_lifecycle, test_logs, test_recovery, test_retention

SQLITE_ONLY: set[str] = set()
"""Tests that look inside SQLite itself (none of these modules' do, today)."""

for module in (test_coordinator, test_lifecycle, test_recovery, test_logs, test_retention):
    globals().update({name: value for name, value in vars(module).items()
                      if (name.startswith("test_") and name not in SQLITE_ONLY)
                      or hasattr(value, "_fixture_function_marker")})  # the fixtures those tests take


@pytest.fixture(autouse=True)
def masters_on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    opened: list[PostgresStore] = []

    def on_postgres(path: str | Path, **_: Any) -> PostgresStore:
        opened.append(open_postgres_store(postgres_url))
        return opened[-1]

    for module in ("tests.test_coordinator", "tests.test_lifecycle", "tests.test_recovery", "tests.test_logs",
                   "tests.test_retention"):
        monkeypatch.setattr(f"{module}.Store", on_postgres, raising=False)
    yield
    for db in opened:
        db.close()
