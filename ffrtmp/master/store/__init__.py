"""The master's durable state: jobs, attempts, history, nodes, logs, keys.

`Store` is the interface (a Protocol, api.py) everything outside this package uses; `open_store(db)` opens
one: a path is the embedded SQLite backend (`SqliteStore`), a `postgresql://` URL the PostgreSQL one. No
module outside this package runs SQL.
"""

from __future__ import annotations

from ffrtmp.master.store.api import (
    ACTIVE,
    STORE_ERRORS,
    TERMINAL,
    ActiveAttempt,
    ApiKeyRow,
    Assignment,
    AttemptRow,
    Ending,
    HistoryRow,
    JobRow,
    LogLine,
    NodeRow,
    Quota,
    Store,
    StoreError,
    StoreReader,
    StoreUnreachable,
    TenantLanes,
    WriteFault,
)
from ffrtmp.master.store.opening import open_store, prepare_data_dir
from ffrtmp.master.store.sqlite import SqliteStore

__all__ = ["ACTIVE", "STORE_ERRORS", "TERMINAL", "ActiveAttempt", "ApiKeyRow", "Assignment", "AttemptRow", "Ending",
           "HistoryRow", "JobRow", "LogLine", "NodeRow", "Quota", "SqliteStore", "Store", "StoreError",
           "StoreReader", "StoreUnreachable", "TenantLanes", "WriteFault", "open_store", "prepare_data_dir"]
