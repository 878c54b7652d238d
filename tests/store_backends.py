"""The store backends the contract suite (tests/test_store.py) runs against.

`BACKENDS` maps a name to a factory: given a test's tmp path, it opens that test's database, fresh on the
first call and the same one on later calls (a second connection, as a second process would have). A backend
that cannot run here (its driver or its server is missing) skips.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from ffrtmp.master.store import Store, open_store

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


def sqlite_store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "master.db", 0)


def fresh_postgres_url(tmp_path: Path) -> str:
    """A database of its own for this test on the local PostgreSQL server, created on the first call."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("ffrtmp.master.store.postgres") is None:
        pytest.skip("the PostgreSQL backend is not installed (pip install 'ffrtmp[postgres]')")
    import psycopg

    name = "ffrtmp_test_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    marker = tmp_path / ".postgres-database"
    if not marker.exists():
        try:
            with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}: {exc}")
        marker.write_text(name)
    return f"{POSTGRES_SERVER}/{name}"


def postgres_store(tmp_path: Path) -> Store:
    return open_store(fresh_postgres_url(tmp_path), 0)


BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": sqlite_store,
    # "postgresql": postgres_store,  (one line, once ffrtmp.master.store.postgres exists)
}
