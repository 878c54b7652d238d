"""The fair share between tenants: the order pending jobs are offered to placement in (pure).

The store uses it to order a lane's heads, dispatch to carry the turns over from pass to pass.
"""

from __future__ import annotations

from typing import Any


def fair_order(jobs: list[dict[str, Any]], aged_before: float | None = None,
               turns: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Dispatch order with a fair share between tenants: heavier first; at equal weight the tenants take turns
    (each one's first job, then each one's second, ...), FIFO inside a tenant, so one tenant's backlog never
    starves another. With aging (`aged_before`), jobs created before it come first, oldest first.

    `turns` (tenant → jobs dispatched so far, kept by the caller across passes; see `served`) carries the
    turns over from pass to pass: when slots free one at a time, each pass places one job, and without it
    the tenant with the oldest head would win every pass. Tenants with no job here are forgotten (one coming
    back starts level with the others, not ahead or behind by its past)."""
    turns = {} if turns is None else turns
    present = {job["tenant"] for job in jobs}
    for tenant in list(turns):
        if tenant not in present:
            del turns[tenant]
    floor = min(turns.values(), default=0)
    for tenant in present:
        turns.setdefault(tenant, floor)  # waiting from now on, level with the least served
    rank: dict[str, int] = {}
    by_tenant_weight: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for job in jobs:
        by_tenant_weight.setdefault((job["tenant"], job["weight"]), []).append(job)
    for same in by_tenant_weight.values():
        same.sort(key=lambda job: job["seq"])
        start = turns[same[0]["tenant"]]
        for position, job in enumerate(same):
            rank[job["id"]] = start + position

    def key(job: dict[str, Any]) -> tuple[int, float, int, int]:
        if aged_before is not None and job["created_at"] < aged_before:
            return (0, 0, 0, job["seq"])
        return (1, -job["weight"], rank[job["id"]], job["seq"])

    return sorted(jobs, key=key)


def served(turns: dict[str, int], tenant: str) -> None:
    """One more job of `tenant` was dispatched (its next ones wait behind the other tenants' turn)."""
    turns[tenant] = max(turns.get(tenant, 0), min(turns.values(), default=0)) + 1
