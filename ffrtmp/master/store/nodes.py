"""Worker nodes in the master database: one row per name (a unique key: no duplicates by construction)."""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import NodeRow


class NodeRows:
    """The node part of `Store` (a mixin: it uses the store's connection)."""

    conn: sqlite3.Connection

    def upsert_node(self, node: dict[str, Any], now: float) -> None:
        self.conn.execute(
            "INSERT INTO nodes (name, fingerprint, status, version, slots, engines, encoders, labels, resources,"
            " first_seen, last_seen, curve_key, api_key) VALUES (:name, :fingerprint, :status, :version, :slots,"
            " :engines, :encoders, :labels, :resources, :now, :now, :curve_key, :api_key)"
            " ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " status = excluded.status, version = excluded.version, slots = excluded.slots,"
            " engines = excluded.engines, encoders = excluded.encoders, labels = excluded.labels,"
            " resources = excluded.resources, last_seen = excluded.last_seen, curve_key = excluded.curve_key,"
            " api_key = excluded.api_key",
            {**{k: node.get(k) for k in ("name", "fingerprint", "status", "version", "slots", "curve_key", "api_key")},
             "engines": to_json(node.get("engines", [])), "encoders": to_json(node.get("encoders", {})),
             "labels": to_json(node.get("labels", {})), "resources": to_json(node.get("resources", {})), "now": now})

    def update_node(self, name: str, *, status: str | None = None, last_seen: float | None = None,
                    resources: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            "UPDATE nodes SET status = coalesce(?, status), last_seen = coalesce(?, last_seen),"
            " resources = coalesce(?, resources) WHERE name = ?",
            (status, last_seen, to_json(resources) if resources is not None else None, name))

    def offline_nodes(self, before: float) -> list[str]:
        """Names of the nodes offline since before `before` (last seen then)."""
        rows = self.conn.execute("SELECT name FROM nodes WHERE status = 'offline' AND last_seen < ?", (before,))
        return [row[0] for row in rows]

    def forget_node(self, name: str) -> bool:
        """Delete an offline node's row (its jobs keep its name); False when there is no such offline node."""
        return self.conn.execute("DELETE FROM nodes WHERE name = ? AND status = 'offline'", (name,)).rowcount == 1

    def attempt_node(self, job_id: str, attempt: int) -> str | None:
        """The node the master gave this attempt of the job to (None: no such attempt)."""
        row = self.conn.execute("SELECT a.node FROM jobs j JOIN attempts a ON a.job_seq = j.seq"
                                " WHERE j.id = ? AND a.attempt = ?", (job_id, attempt)).fetchone()
        return row[0] if row is not None else None

    def list_nodes(self) -> list[NodeRow]:
        return [_node(row) for row in self.conn.execute("SELECT * FROM nodes ORDER BY name")]

    def get_node(self, name: str) -> NodeRow | None:
        row = self.conn.execute("SELECT * FROM nodes WHERE name = ?", (name,)).fetchone()
        return _node(row) if row else None


def _node(row: sqlite3.Row) -> NodeRow:
    node = dict(row)
    for key, default in (("engines", []), ("encoders", {}), ("labels", {}), ("resources", {})):
        node[key] = from_json(node[key], default)
    return cast(NodeRow, node)


