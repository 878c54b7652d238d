"""The `report` operation: quality, speed, energy and cost of completed jobs, grouped (SPEC §9, `ffrtmp report`).

The store aggregates (store/report.py); this checks the arguments from the network and scopes the report to
the caller: a tenant's key reports on its own jobs only, an admin's on every tenant's.
"""

from __future__ import annotations

import math
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.master.auth import Principal
from ffrtmp.master.state import MasterState
from ffrtmp.master.store.report import GROUPINGS, check_grouping

MAX_GROUP = 256
"""Longest sweep group id accepted (label values are shorter still)."""


def _since(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInput("since", "must be a positive number of seconds (the report's window)")
    return float(value)


def report(state: MasterState, caller: Principal, args: dict[str, Any], now: float) -> Any:
    by = args.get("by", "scenario")
    if not isinstance(by, str):
        raise InvalidInput("by", f"must be one of {', '.join(GROUPINGS)}")
    check_grouping(by)
    window = _since(args.get("since"))
    group = args.get("group")
    if group is not None and (not isinstance(group, str) or not group or len(group) > MAX_GROUP):
        raise InvalidInput("group", f"must be a sweep's group id (1 to {MAX_GROUP} characters)")
    points = args.get("points", False)
    if not isinstance(points, bool):
        raise InvalidInput("points", "must be true or false")
    since = None if window is None else now - window
    rows = state.store.job_report(by, since=since, group=group, tenant=caller.scope)
    answer: dict[str, Any] = {"by": by, "since": since, "group": group, "jobs": sum(r["jobs"] for r in rows),
                              "groups": rows}
    if points:
        answer["points"] = state.store.rate_quality(since=since, group=group, tenant=caller.scope)
    return answer
