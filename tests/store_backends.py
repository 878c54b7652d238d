"""The store backends the contract suite (tests/test_store.py) runs against.

`BACKENDS` maps a name to a factory: given a test's tmp path, it opens that test's database, fresh on the
first call and the same one on later calls (a second connection, as a second process would have). A backend
that cannot run here (its driver or its server is missing) skips.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from ffrtmp.master.store import Store, open_store

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


def sqlite_store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "master.db", 0)


_contract_database: list[str] = []
"""The one database this test process makes for the contract suite (each test gets a schema in it)."""


def _drop_contract_database() -> None:
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True,
                                                             connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_contract_database[0]}" WITH (FORCE)')


def fresh_postgres_url(tmp_path: Path) -> str:
    """A schema of its own for this test in this process's database on the local PostgreSQL server, empty on
    the first call and the same one on later calls (the URL sets the connection's search_path to it)."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("ffrtmp.master.store.postgres") is None:
        pytest.skip("the PostgreSQL backend is not installed (pip install 'ffrtmp[postgres]')")
    import psycopg

    try:
        if not _contract_database:
            name = f"ffrtmp_contract_{os.getpid()}_{secrets.token_hex(4)}"
            with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            _contract_database.append(name)
            atexit.register(_drop_contract_database)
        url = f"{POSTGRES_SERVER}/{_contract_database[0]}"
        schema = "t_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
        marker = tmp_path / ".postgres-schema"
        if not marker.exists():
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{schema}"')
            marker.write_text(schema)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}: {exc}")
    return f"{url}?options=-csearch_path%3D{schema}"


def postgres_store(tmp_path: Path) -> Store:
    return open_store(fresh_postgres_url(tmp_path), 0)


BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": sqlite_store,
    "postgresql": postgres_store,
}
