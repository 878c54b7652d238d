"""API keys and tenants on PostgreSQL (a mixin of `PostgresStore`; the same results as keys.py for SQLite)."""

from __future__ import annotations

import json
from typing import cast

from ffrtmp.master.store.api import ApiKeyRow, Quota, TenantLanes
from ffrtmp.master.store.keys import KEY_COLUMNS
from ffrtmp.master.store.postgres_lifecycle import writes
from ffrtmp.master.store.postgres_session import Session


def _json_list(names: tuple[str, ...] | None) -> str | None:
    return json.dumps(names) if names else None  # an empty list is no list, as in SQLite


class KeyRows(Session):
    @writes
    def insert_api_key(self, key: ApiKeyRow) -> None:
        """Store a new key (id, hash, role, tenant, node, note, created_at)."""
        self.execute("INSERT INTO api_keys (id, hash, role, tenant, node, note, created_at)"
                     " VALUES (%(id)s, %(hash)s, %(role)s, %(tenant)s, %(node)s, %(note)s, %(created_at)s)",
                     {"node": None, "note": "", **key})

    def find_api_key(self, key_id: str) -> ApiKeyRow | None:
        """The key with this id, with its hash (revoked ones too: the caller checks `revoked_at`)."""
        row = self.one(f"SELECT {KEY_COLUMNS}, hash FROM api_keys WHERE id = %s", (key_id,))
        return cast(ApiKeyRow, dict(row)) if row is not None else None

    def list_api_keys(self) -> list[ApiKeyRow]:
        """Every key, revoked ones included, oldest first, without hashes."""
        return [cast(ApiKeyRow, dict(row))
                for row in self.all(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    @writes
    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """False when there is no such active key."""
        return self.execute("UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                            (now, key_id)).rowcount == 1

    def had_api_keys(self) -> bool:
        """True once any key was ever made, revoked ones included (protected mode never opens again)."""
        return self.one("SELECT 1 FROM api_keys LIMIT 1") is not None

    @writes
    def set_quota(self, tenant: str, max_pending: int | None, max_running: int | None) -> None:
        self.execute("INSERT INTO tenants (name, max_pending, max_running) VALUES (%s, %s, %s) ON CONFLICT (name)"
                     " DO UPDATE SET max_pending = excluded.max_pending, max_running = excluded.max_running",
                     (tenant, max_pending, max_running))
        self.quotas_changed()

    def quotas(self) -> dict[str, Quota]:
        return self.tenant_quotas(self._read_quotas)

    def _read_quotas(self) -> dict[str, Quota]:
        rows = self.all("SELECT name, max_pending, max_running FROM tenants")
        return {str(row["name"]): {"max_pending": row["max_pending"], "max_running": row["max_running"]}
                for row in rows}

    @writes
    def set_lanes(self, tenant: str, queues: tuple[str, ...] | None, priorities: tuple[str, ...] | None) -> None:
        """The queues and priorities `tenant` may use (None: no list, the defaults apply)."""
        self.execute("INSERT INTO tenants (name, queues, priorities) VALUES (%s, %s, %s) ON CONFLICT (name)"
                     " DO UPDATE SET queues = excluded.queues, priorities = excluded.priorities",
                     (tenant, _json_list(queues), _json_list(priorities)))
        self.quotas_changed()  # a new tenant row

    def granted_lanes(self) -> dict[str, TenantLanes]:
        """The lists set per tenant, for the tenants that have one."""
        rows = self.all("SELECT name, queues, priorities FROM tenants"
                        " WHERE queues IS NOT NULL OR priorities IS NOT NULL")
        granted: dict[str, TenantLanes] = {}
        for row in rows:
            lanes: TenantLanes = {}
            if row["queues"]:
                lanes["queues"] = json.loads(row["queues"])
            if row["priorities"]:
                lanes["priorities"] = json.loads(row["priorities"])
            granted[str(row["name"])] = lanes
        return granted
