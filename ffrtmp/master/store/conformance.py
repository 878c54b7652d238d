"""A static check, for mypy only: both backends satisfy the `Store` and `StoreReader` protocols.

Nothing imports this module at run time; mypy checks it with the package, so a backend that lacks a method
of the protocol, or has one with another signature, fails `mypy` before any test runs.
"""

from __future__ import annotations

from ffrtmp.master.store.api import Store, StoreReader
from ffrtmp.master.store.postgres import PostgresStore
from ffrtmp.master.store.postgres_reader import PostgresReader
from ffrtmp.master.store.reader import SqliteReader
from ffrtmp.master.store.sqlite import SqliteStore


def sqlite_is_a_store(store: SqliteStore, reader: SqliteReader) -> tuple[Store, StoreReader]:
    return store, reader


def postgres_is_a_store(store: PostgresStore, reader: PostgresReader) -> tuple[Store, StoreReader]:
    return store, reader
