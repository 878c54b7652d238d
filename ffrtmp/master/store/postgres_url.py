"""Which `--db` values name a PostgreSQL store, and opening one (importable without psycopg installed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ffrtmp.errors import InvalidInput

if TYPE_CHECKING:
    from ffrtmp.master.store.postgres import PostgresStore

_SCHEME = re.compile(r"^(postgresql|postgres):/+")


def postgres_url_of(db: str | Path | None) -> str | None:
    """The PostgreSQL URL that `--db` names, or None for an SQLite path. A URL read as a `Path` has lost one
    slash of its `//` (`postgresql:/user@host/db`): it is put back."""
    if db is None:
        return None
    text = str(db)
    match = _SCHEME.match(text)
    if match is None:
        return None
    return f"{match.group(1)}://{text[match.end():]}"


def open_url_store(db: str | Path, *, migrate: bool) -> PostgresStore:
    """The PostgreSQL store `db` names; InvalidInput when it is no URL or psycopg is missing."""
    url = postgres_url_of(db)
    if url is None:
        raise InvalidInput("db", f"{db!s} is not a PostgreSQL URL (postgresql://USER@HOST:PORT/DBNAME)")
    try:
        from ffrtmp.master.store.postgres import open_postgres_store
    except ImportError:
        raise InvalidInput("db", "a PostgreSQL store needs psycopg: pip install 'ffrtmp[postgres]'") from None
    return open_postgres_store(url, migrate=migrate)


def postgres_had_api_keys(db: str | Path) -> bool:
    """True when the database behind `db` holds any API key (protected mode's peek; False when unreadable)."""
    url = postgres_url_of(db)
    if url is None:
        return False
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            found = conn.execute("SELECT EXISTS (SELECT 1 FROM api_keys)").fetchone()
            return bool(found and found[0])
    except psycopg.Error:
        return False  # no such table yet (a new database), or unreachable: the master's start says which
