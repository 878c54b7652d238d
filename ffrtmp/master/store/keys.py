"""API keys and tenants in the master database (a mixin of `SqliteStore`): what `auth` and `tenants` decide on."""

from __future__ import annotations

import json
import sqlite3
from typing import cast

from ffrtmp.master.store.api import ApiKeyRow, Quota, TenantLanes

KEY_COLUMNS = "id, role, tenant, node, note, created_at, revoked_at"
"""What a listing shows of a key (never its hash)."""


class KeyRows:
    """The keys and tenants part of `SqliteStore` (it uses the store's connection)."""

    conn: sqlite3.Connection

    def insert_api_key(self, key: ApiKeyRow) -> None:
        """Store a new key (id, hash, role, tenant, node, note, created_at); run it in a transaction."""
        self.conn.execute("INSERT INTO api_keys (id, hash, role, tenant, node, note, created_at)"
                          " VALUES (:id, :hash, :role, :tenant, :node, :note, :created_at)",
                          {"node": None, "note": "", **key})

    def find_api_key(self, key_id: str) -> ApiKeyRow | None:
        """The key with this id, with its hash (revoked ones too: the caller checks `revoked_at`)."""
        row = self.conn.execute(f"SELECT {KEY_COLUMNS}, hash FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return cast(ApiKeyRow, dict(row)) if row is not None else None

    def list_api_keys(self) -> list[ApiKeyRow]:
        """Every key, revoked ones included, oldest first, without hashes."""
        rows = self.conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return [cast(ApiKeyRow, dict(row)) for row in rows]

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """False when there is no such active key."""
        return self.conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                 (now, key_id)).rowcount == 1

    def had_api_keys(self) -> bool:
        """True once any key was ever made, revoked ones included (protected mode never opens again)."""
        return self.conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def set_quota(self, tenant: str, max_pending: int | None, max_running: int | None) -> None:
        self.conn.execute("INSERT INTO tenants (name, max_pending, max_running) VALUES (?,?,?) ON CONFLICT(name)"
                          " DO UPDATE SET max_pending = excluded.max_pending, max_running = excluded.max_running",
                          (tenant, max_pending, max_running))

    def quotas(self) -> dict[str, Quota]:
        rows = self.conn.execute("SELECT name, max_pending, max_running FROM tenants")
        return {row[0]: {"max_pending": row[1], "max_running": row[2]} for row in rows}

    def set_lanes(self, tenant: str, queues: tuple[str, ...] | None, priorities: tuple[str, ...] | None) -> None:
        """The queues and priorities `tenant` may use (None: no list, the defaults apply)."""
        self.conn.execute("INSERT INTO tenants (name, queues, priorities) VALUES (?,?,?) ON CONFLICT(name)"
                          " DO UPDATE SET queues = excluded.queues, priorities = excluded.priorities",
                          (tenant, json.dumps(queues) if queues else None,
                           json.dumps(priorities) if priorities else None))

    def granted_lanes(self) -> dict[str, TenantLanes]:
        """The lists set per tenant, for the tenants that have one."""
        rows = self.conn.execute("SELECT name, queues, priorities FROM tenants"
                                 " WHERE queues IS NOT NULL OR priorities IS NOT NULL")
        granted: dict[str, TenantLanes] = {}
        for name, queues, priorities in rows:
            lanes: TenantLanes = {}
            if queues:
                lanes["queues"] = json.loads(queues)
            if priorities:
                lanes["priorities"] = json.loads(priorities)
            granted[name] = lanes
        return granted
