"""Every client operation, named once: who may call it, which rate-limit bucket it draws on, what answers
it, and whether it streams or writes.

The REQUEST handler (client_gate), the degraded mode's read-only filter and the rate limiter's kinds all read
this table; a new operation is one line here and one function in requests.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffrtmp.master import reports, requests
from ffrtmp.master.auth import Principal
from ffrtmp.master.recommend_op import recommend_op
from ffrtmp.master.state import MasterState

Args = dict[str, Any]
Answer = Callable[[MasterState, Principal, Args, float], Any]
"""Returns the reply body, or raises an FfrtmpError whose status becomes the reply's."""
Stream = Callable[[MasterState, Principal, bytes, str, Args, float], None]
"""Sends its own PARTIALs and final REPLY (route, request id)."""

UNKNOWN_NEEDS = "admin"
"""The permission an unknown operation needs (only an admin learns that it does not exist)."""
UNKNOWN_RATE = "read"


@dataclass(frozen=True)
class Operation:
    name: str
    needs: str
    """The permission a caller's role must grant (auth.GRANTS)."""
    rate: str
    """The rate-limit bucket it draws on (ratelimit.KINDS)."""
    answer: Answer | None = None
    stream: Stream | None = None
    """Set instead of `answer` for an operation that sends PARTIALs before its final REPLY."""
    writes: bool = False
    """True: it writes the store, so it is refused while the store is degraded."""


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("submit", "submit", "submit", requests.submit, writes=True),
    Operation("cancel", "submit", "submit", requests.cancel, writes=True),
    Operation("retry", "submit", "submit", requests.retry, writes=True),
    Operation("get", "read", "read", requests.get),
    Operation("list", "read", "read", requests.list_jobs),
    Operation("logs", "read", "logs", requests.logs),
    Operation("logs.follow", "read", "logs", stream=requests.follow_logs),
    Operation("stats", "read", "read", requests.stats),
    Operation("ping", "read", "read", requests.ping),
    Operation("cluster", "read", "read", requests.cluster),
    Operation("files_info", "read", "read", requests.files_info),
    Operation("upload", "submit", "submit", requests.file_access, writes=True),
    Operation("download", "read", "read", requests.file_access),
    Operation("nodes.list", "read", "read", requests.nodes_list),
    Operation("nodes.get", "read", "read", requests.nodes_get),
    Operation("nodes.drain", "admin", "read", requests.nodes_drain, writes=True),
    Operation("nodes.forget", "admin", "read", requests.nodes_forget, writes=True),
    Operation("recommend", "read", "read", recommend_op),
    Operation("report", "read", "read", reports.report),
)}

STREAMS = frozenset(name for name, op in OPERATIONS.items() if op.stream is not None)
READ_ONLY = frozenset(name for name, op in OPERATIONS.items() if not op.writes)
"""Operations answered without writing the store (served while the store is degraded)."""


def needs_of(name: str) -> str:
    op = OPERATIONS.get(name)
    return op.needs if op is not None else UNKNOWN_NEEDS


def rate_of(name: str) -> str:
    op = OPERATIONS.get(name)
    return op.rate if op is not None else UNKNOWN_RATE
