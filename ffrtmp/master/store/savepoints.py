"""Savepoints that cost nothing until their block writes (the SQLite connection of `SqliteStore`).

The coordinator guards every message of a batch with a savepoint, so a bug costs that message only; a
batch holds up to 2,000 messages. Most of them write nothing of their own (results are gathered and written
once per frame, reads write nothing), so the SAVEPOINT statement is issued only just before a block's first
write: a batch of results costs one savepoint, not one per message. A client-server backend does the same
(there, each savepoint is a subtransaction, and many of them in one transaction slow every reader down).
"""

from __future__ import annotations

import sqlite3
from typing import Any

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
"""How every write statement of the store begins."""
NAME = "message"


def is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(WRITES)


class LazySavepointConnection(sqlite3.Connection):
    """`scopes` are the savepoints opened and not yet released, innermost last: True once issued."""

    scopes: list[bool]
    opened: int = 0
    issued: int = 0
    """Savepoints asked for, and SAVEPOINT statements issued, so far (what tests and benchmarks count)."""

    def open_scope(self) -> None:
        if not hasattr(self, "scopes"):
            self.scopes = []
        self.scopes.append(False)
        self.opened += 1
        if not self.in_transaction:
            self._issue()  # outside a transaction SAVEPOINT begins one: keep that, every write is then inside it

    def close_scope(self, *, undo: bool) -> None:
        """Release the innermost savepoint; with `undo`, first roll back what its block wrote."""
        if self.scopes.pop():
            if undo:
                super().execute(f"ROLLBACK TO {NAME}")
            super().execute(f"RELEASE {NAME}")

    def _issue(self) -> None:
        for depth, issued in enumerate(self.scopes):
            if not issued:
                super().execute(f"SAVEPOINT {NAME}")
                self.scopes[depth] = True
                self.issued += 1

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if getattr(self, "scopes", None) and not self.scopes[-1] and is_write(sql):
            self._issue()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        if getattr(self, "scopes", None) and not self.scopes[-1] and is_write(sql):
            self._issue()
        return super().executemany(sql, parameters)
