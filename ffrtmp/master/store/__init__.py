"""The master's durable state: jobs, attempts, history, nodes, logs, keys.

`Store` is the SQLite backend (the embedded default). Everything outside this package goes through the
names exported here, so a second backend can stand behind the same interface.
"""

from __future__ import annotations

from ffrtmp.master.store.sqlite import TERMINAL, Ending, Store

__all__ = ["TERMINAL", "Ending", "Store"]
