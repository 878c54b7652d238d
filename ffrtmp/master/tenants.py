"""Which queues and priorities a tenant's jobs may use (`keys quota set --queues … --priorities …`).

`live` and `high` jump ahead of everyone's work, so in a shared master they are a grant, not a choice. A
single-user master stays as it was: while no tenant has a list, every tenant may use everything. Once any
tenant has one, a tenant without a list gets the everyday lanes only (DEFAULT_QUEUES, DEFAULT_PRIORITIES).
Admin keys are never restricted.
"""

from __future__ import annotations

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import PRIORITY_WEIGHTS, QUEUE_WEIGHTS, check_name
from ffrtmp.master.store import STORE_ERRORS, Store, TenantLanes

DEFAULT_QUEUES = ("default", "batch")
DEFAULT_PRIORITIES = ("medium", "low")
CHOICES = {"queues": tuple(QUEUE_WEIGHTS), "priorities": tuple(PRIORITY_WEIGHTS)}


def parse_allowed(field: str, text: str | None) -> tuple[str, ...] | None:
    """`default,batch` → ('default', 'batch'); None stays None (no list)."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise InvalidInput(field, "must name at least one, comma-separated")
    for name in names:
        if name not in CHOICES[field]:
            raise InvalidInput(field, f"{name!r} is not one of {', '.join(CHOICES[field])}")
    return names


def set_allowed(store: Store, tenant: str, queues: tuple[str, ...] | None,
                priorities: tuple[str, ...] | None) -> None:
    check_name("tenant", tenant)
    with store.transaction():
        store.set_lanes(tenant, queues, priorities)


def granted_lanes(store: Store) -> dict[str, TenantLanes]:
    """The lists set with `keys quota set --queues/--priorities`, per tenant that has one."""
    try:
        return store.granted_lanes()
    except STORE_ERRORS:
        return {}


def allowed_lanes(store: Store) -> dict[str, tuple[frozenset[str], frozenset[str]]] | None:
    """tenant → (queues, priorities) it may use, with '' for tenants without a list; None: all allowed."""
    try:
        granted = store.granted_lanes()
    except STORE_ERRORS:
        return None
    if not granted:
        return None
    lanes = {"": (frozenset(DEFAULT_QUEUES), frozenset(DEFAULT_PRIORITIES))}
    for name, lists in granted.items():
        lanes[name] = (frozenset(lists.get("queues", DEFAULT_QUEUES)),
                       frozenset(lists.get("priorities", DEFAULT_PRIORITIES)))
    return lanes


def check_lane(lanes: dict[str, tuple[frozenset[str], frozenset[str]]] | None, tenant: str, queue: str,
               priority: str, field_prefix: str = "") -> None:
    """InvalidInput naming the field when `tenant` may not use this queue or priority."""
    if lanes is None:
        return
    queues, priorities = lanes.get(tenant, lanes[""])
    if queue not in queues:
        raise InvalidInput(f"{field_prefix}queue", f"tenant {tenant!r} may use queues {', '.join(sorted(queues))}"
                           " (an admin grants more: ffrtmp keys quota set --queues)")
    if priority not in priorities:
        raise InvalidInput(f"{field_prefix}priority", f"tenant {tenant!r} may use priorities "
                           f"{', '.join(sorted(priorities))} (an admin grants more: "
                           "ffrtmp keys quota set --priorities)")
