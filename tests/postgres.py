"""A real PostgreSQL for the tests: one fresh database per test run, one fresh schema per test.

The server is FFRTMP_TEST_POSTGRES (default: the machine's cluster on 127.0.0.1 with trust auth, which
`scripts/test` starts). Without a server the tests that need one skip; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI (.ci/run starts it): {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


def _with_database(url: str, name: str) -> str:
    """`url` with its database part replaced by `name` (a URL ends with /DATABASE, perhaps ?OPTIONS)."""
    base, _, options = url.partition("?")
    head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{head}/{name}" + (f"?{options}" if options else "")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database made for this test run (ffrtmp_test_<pid>_<random>), dropped at the end."""
    try:
        import psycopg
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[postgres]')")
    server = os.environ.get("FFRTMP_TEST_POSTGRES", DEFAULT_SERVER)
    name = f"ffrtmp_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _missing(f"{server}: {str(exc).strip()}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The test run's database with an empty `public` schema: each test starts from nothing."""
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return postgres_database
