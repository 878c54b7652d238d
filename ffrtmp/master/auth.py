"""Who may do what: API keys with roles and tenants, checked on every request, and tenant quotas.

Keys look like `ffk_<id>_<secret>`; the master's database keeps only the id, a SHA-256 of the whole key
(the secret is 256 random bits, so a fast hash is enough) and the key's role and tenant, and compares hashes
in constant time. The seed system's single `--api-key` still works and is an admin key. A master that never
had a key is open: everyone is an admin of the default tenant. Once it has had one it stays closed, even with
every key revoked (revoking a leaked key must never open the cluster).

A worker key serves the tenants it names (`*`: all) and may use only the node names it allows (a name, or a
prefix ending in `*`); a node is bound to the key that first registered it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ffrtmp.errors import InvalidInput, NotAuthorized, NotFound
from ffrtmp.jobspec import check_name
from ffrtmp.master.store import Store

ROLES = ("admin", "submit", "read", "worker")
GRANTS = {
    "admin": frozenset({"admin", "submit", "read", "worker"}),
    "submit": frozenset({"submit", "read"}),
    "read": frozenset({"read"}),
    "worker": frozenset({"worker"}),
}
"""What each role may do."""

_KEY = re.compile(r"^ffk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
KEYS_CHECK_EVERY = 1.0
"""How often the master rereads which API keys are active (so a new or revoked key takes effect in a second)."""
ALL_TENANTS = "*"
"""The tenant of a worker key that serves every tenant."""
NO_ACTIVE_KEY = ("this master has no active API key (every key was revoked), so it refuses every request; "
                 "on the master's machine create one with `ffrtmp keys api create --role admin`")


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the key's id (or '-'), its role and tenant; admins see every tenant."""

    key: str
    role: str
    tenant: str
    node: str | None = None
    """For worker keys: the node name (or `PREFIX*`) the key may register; None: any."""

    def may(self, permission: str) -> bool:
        return permission in GRANTS.get(self.role, frozenset())

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs this principal sees, or None for all (admins)."""
        return None if self.role == "admin" else self.tenant

    @property
    def serves(self) -> frozenset[str] | None:
        """The tenants whose jobs a worker with this key may run; None: all."""
        return None if self.role == "admin" or self.tenant == ALL_TENANTS else frozenset({self.tenant})

    def may_name(self, name: str) -> bool:
        """True when a worker with this key may register as `name`."""
        if self.node is None:
            return True
        if self.node.endswith("*"):
            return name.startswith(self.node[:-1])
        return name == self.node


OPEN = Principal("-", "admin", "")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authority:
    def __init__(self, store: Store, legacy_key: str | None) -> None:
        self.store = store
        self.legacy_key = legacy_key
        self._had_keys = False
        self._active: frozenset[str] = frozenset()
        self._checked = -KEYS_CHECK_EVERY

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < KEYS_CHECK_EVERY:
            return
        self._checked = now
        rows = self.store.conn.execute("SELECT id, revoked_at FROM api_keys").fetchall()
        self._active = frozenset(row[0] for row in rows if row[1] is None)
        self._had_keys = self._had_keys or bool(rows)  # sticky: a master that had keys never opens again

    def keys_exist(self) -> bool:
        """True while some API key is active."""
        self._refresh()
        return bool(self._active)

    def is_open(self) -> bool:
        """True only for a master that never had any key: everyone is admin."""
        self._refresh()
        return self.legacy_key is None and not self._had_keys

    def key_active(self, key_id: str) -> bool:
        """False once key `key_id` is revoked (checked on each message of a joined worker, cached for a second)."""
        if key_id == "-":
            return self.is_open()  # joined while the master was open: the first key closes that door too
        if key_id == "legacy":
            return self.legacy_key is not None
        self._refresh()
        return key_id in self._active

    def _refused(self, message: str) -> NotAuthorized:
        if self.legacy_key is None and not self.keys_exist():
            return NotAuthorized(NO_ACTIVE_KEY)
        return NotAuthorized(message)

    def authenticate(self, token: object) -> Principal:
        """The principal behind `token`, or NotAuthorized (the same message whatever was wrong)."""
        if not isinstance(token, str) or not token:
            if self.is_open():
                return OPEN
            raise self._refused("an API key is required (--api-key / FFRTMP_API_KEY)")
        if self.legacy_key is not None and hmac.compare_digest(self.legacy_key.encode(), token.encode()):
            return Principal("legacy", "admin", "")
        match = _KEY.match(token)
        row = self.store.conn.execute("SELECT hash, role, tenant, node, revoked_at FROM api_keys WHERE id = ?",
                                      (match.group(1),)).fetchone() if match else None
        expected = row["hash"] if row is not None else _hash("no such key")
        if not hmac.compare_digest(expected, _hash(token)) or row is None or row["revoked_at"] is not None:
            if self.is_open():
                return OPEN  # a master that never had a key ignores keys it does not know
            raise self._refused("the API key is missing, wrong or revoked (check --api-key / FFRTMP_API_KEY)")
        return Principal(match.group(1) if match else "?", row["role"], row["tenant"], row["node"])

    def authorize(self, principal: Principal, op: str, need: str) -> None:
        """`need`: the permission `op` needs (ffrtmp.master.operations)."""
        if not principal.may(need):
            raise NotAuthorized(f"a {principal.role} key may not {op} (it needs a role with '{need}')")


# ---- administration, on the master's database ----------------------------------------------------------


def create_key(store: Store, role: str, tenant: str | None, note: str = "",
               node: str | None = None) -> tuple[str, str]:
    """A new key; returns (id, the full key). The key itself is shown once and never stored.

    `tenant` None means `default`, or for a worker key every tenant (`*`). `node` (worker keys only) is the
    node name, or `PREFIX*`, the key may register as.
    """
    if role not in ROLES:
        raise InvalidInput("role", f"{role!r} is not one of {', '.join(ROLES)}")
    if tenant is None:
        tenant = ALL_TENANTS if role == "worker" else "default"
    if tenant != ALL_TENANTS or role != "worker":
        check_name("tenant", tenant)
    if node is not None:
        if role != "worker":
            raise InvalidInput("node", "only a worker key is bound to node names")
        check_name("node", node[:-1] if node.endswith("*") and len(node) > 1 else node)
    key_id = secrets.token_hex(6)
    token = f"ffk_{key_id}_{secrets.token_urlsafe(32)}"
    with store.transaction():
        store.conn.execute("INSERT INTO api_keys (id, hash, role, tenant, node, note, created_at)"
                           " VALUES (?,?,?,?,?,?,?)",
                           (key_id, _hash(token), role, tenant, node, note[:200], time.time()))
    return key_id, token


def list_keys(store: Store) -> list[dict[str, Any]]:
    rows = store.conn.execute("SELECT id, role, tenant, node, note, created_at, revoked_at FROM api_keys"
                              " ORDER BY created_at")
    return [dict(row) for row in rows]


def revoke_key(store: Store, key_id: str) -> None:
    with store.transaction():
        cur = store.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                 (time.time(), key_id))
    if cur.rowcount != 1:
        raise NotFound(f"no active API key {key_id!r}")


def set_quota(store: Store, tenant: str, max_pending: int | None, max_running: int | None) -> None:
    check_name("tenant", tenant)
    for name, value in (("max-pending", max_pending), ("max-running", max_running)):
        if value is not None and value < 0:
            raise InvalidInput(name, "must be 0 or more (leave it out for no limit)")
    with store.transaction():
        store.conn.execute("INSERT INTO tenants (name, max_pending, max_running) VALUES (?,?,?) ON CONFLICT(name)"
                           " DO UPDATE SET max_pending = excluded.max_pending, max_running = excluded.max_running",
                           (tenant, max_pending, max_running))


def quotas(store: Store) -> dict[str, dict[str, int | None]]:
    try:
        rows = store.conn.execute("SELECT name, max_pending, max_running FROM tenants").fetchall()
    except sqlite3.Error:
        return {}
    return {row["name"]: {"max_pending": row["max_pending"], "max_running": row["max_running"]} for row in rows}
