"""Job logs and worker nodes on PostgreSQL (a mixin of `PostgresStore`; the same results as logs.py, nodes.py)."""

from __future__ import annotations

from typing import Any, cast

from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import LogLine, NodeRow
from ffrtmp.master.store.postgres_lifecycle import writes
from ffrtmp.master.store.postgres_session import Row, Session

APPEND_LOGS = """
WITH lines AS (INSERT INTO logs (job_id, attempt, seq, at, stream, line)
               SELECT %s, %s, * FROM unnest(%b::bigint[], %b::float8[], %b::text[], %b::text[]))
UPDATE jobs SET log_bytes = log_bytes + %s, log_dropped = log_dropped + %s WHERE id = %s"""


def _node(row: Row) -> NodeRow:
    node = dict(row)
    for key, default in (("engines", []), ("encoders", {}), ("labels", {}), ("resources", {})):
        node[key] = from_json(node[key], default)
    return cast(NodeRow, node)


class LogNodeRows(Session):
    # ---- logs ---------------------------------------------------------------------------------------

    @writes
    def append_logs(self, job_id: str, attempt: int, lines: list[tuple[int, float, str, str]],
                    dropped: int = 0) -> None:
        """Store lines (seq, at, stream, text) and account for their size, in one statement."""
        columns: list[list[Any]] = [list(column) for column in zip(*lines, strict=True)] if lines else [[]] * 4
        size = sum(len(line[3]) + 1 for line in lines)
        self.execute(APPEND_LOGS, (job_id, attempt, *columns, size, dropped, job_id))

    def log_size(self, job_id: str) -> tuple[int, int]:
        row = self.one("SELECT log_bytes, log_dropped FROM jobs WHERE id = %s", (job_id,))
        return (int(row["log_bytes"]), int(row["log_dropped"])) if row else (0, 0)

    def log_owner(self, job_id: str) -> tuple[int, int, str]:
        row = self.one("SELECT log_bytes, log_dropped, tenant FROM jobs WHERE id = %s", (job_id,))
        return (int(row["log_bytes"]), int(row["log_dropped"]), str(row["tenant"])) if row else (0, 0, "")

    def max_log_seq(self, job_id: str, attempt: int) -> int | None:
        row = self.one("SELECT max(seq) AS seq FROM logs WHERE job_id = %s AND attempt = %s", (job_id, attempt))
        return None if row is None or row["seq"] is None else int(row["seq"])

    def log_bytes_by_tenant(self) -> dict[str, int]:
        rows = self.all("SELECT tenant, sum(log_bytes) AS n FROM jobs WHERE log_bytes > 0 GROUP BY tenant")
        return {str(row["tenant"]): int(row["n"]) for row in rows}

    def total_log_bytes(self) -> int:
        row = self.one("SELECT coalesce(sum(log_bytes), 0) AS n FROM jobs")
        return int(row["n"]) if row else 0

    def jobs_with_old_logs(self, finished_before: float | None, limit: int,
                           tenant: str | None = None) -> list[tuple[str, int, str]]:
        """(job id, log bytes, tenant) of finished jobs that still hold logs, oldest first."""
        sql = "SELECT id, log_bytes, tenant FROM jobs WHERE log_bytes > 0 AND finished_at IS NOT NULL"
        args: list[Any] = []
        if finished_before is not None:
            sql += " AND finished_at < %s"
            args.append(finished_before)
        if tenant is not None:
            sql += " AND tenant = %s"
            args.append(tenant)
        rows = self.all(sql + " ORDER BY finished_at LIMIT %s", (*args, limit))
        return [(row["id"], int(row["log_bytes"]), str(row["tenant"])) for row in rows]

    @writes
    def delete_logs(self, job_ids: list[str]) -> None:
        self.execute("DELETE FROM logs WHERE job_id = ANY(%b)", (job_ids,))
        self.execute("UPDATE jobs SET log_bytes = 0 WHERE id = ANY(%b)", (job_ids,))

    def job_logs(self, job_id: str, attempt: int | None = None, tail: int | None = None,
                 min_attempt: int | None = None) -> list[LogLine]:
        """Lines of one attempt, or of all (`attempt` None), or of `min_attempt` onward; the last `tail` only."""
        where = "job_id = %s"
        args: list[Any] = [job_id]
        if attempt is not None:
            where += " AND attempt = %s"
            args.append(attempt)
        if min_attempt is not None:
            where += " AND attempt >= %s"
            args.append(min_attempt)
        if tail is not None:
            sql = (f"SELECT * FROM (SELECT attempt, seq, at, stream, line FROM logs WHERE {where}"
                   " ORDER BY attempt DESC, seq DESC LIMIT %s) AS last ORDER BY attempt, seq")
            args.append(tail)
        else:
            sql = f"SELECT attempt, seq, at, stream, line FROM logs WHERE {where} ORDER BY attempt, seq"
        return [cast(LogLine, dict(row)) for row in self.all(sql, args)]

    # ---- nodes --------------------------------------------------------------------------------------

    @writes
    def upsert_node(self, node: dict[str, Any], now: float) -> None:
        self.execute(
            "INSERT INTO nodes (name, fingerprint, status, version, slots, engines, encoders, labels, resources,"
            " first_seen, last_seen, curve_key, api_key) VALUES (%(name)s, %(fingerprint)s, %(status)s, %(version)s,"
            " %(slots)s, %(engines)s, %(encoders)s, %(labels)s, %(resources)s, %(now)s, %(now)s, %(curve_key)s,"
            " %(api_key)s) ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " status = excluded.status, version = excluded.version, slots = excluded.slots,"
            " engines = excluded.engines, encoders = excluded.encoders, labels = excluded.labels,"
            " resources = excluded.resources, last_seen = excluded.last_seen, curve_key = excluded.curve_key,"
            " api_key = excluded.api_key",
            {**{k: node.get(k) for k in ("name", "fingerprint", "status", "version", "slots", "curve_key", "api_key")},
             "engines": to_json(node.get("engines", [])), "encoders": to_json(node.get("encoders", {})),
             "labels": to_json(node.get("labels", {})), "resources": to_json(node.get("resources", {})), "now": now})

    @writes
    def update_node(self, name: str, *, status: str | None = None, last_seen: float | None = None,
                    resources: dict[str, Any] | None = None) -> None:
        self.execute(
            "UPDATE nodes SET status = coalesce(%s, status), last_seen = coalesce(%s, last_seen),"
            " resources = coalesce(%s, resources) WHERE name = %s",
            (status, last_seen, to_json(resources) if resources is not None else None, name))

    def offline_nodes(self, before: float) -> list[str]:
        rows = self.all("SELECT name FROM nodes WHERE status = 'offline' AND last_seen < %s", (before,))
        return [row["name"] for row in rows]

    @writes
    def forget_node(self, name: str) -> bool:
        return self.execute("DELETE FROM nodes WHERE name = %s AND status = 'offline'", (name,)).rowcount == 1

    def attempt_node(self, job_id: str, attempt: int) -> str | None:
        row = self.one("SELECT a.node FROM jobs j JOIN attempts a ON a.job_seq = j.seq"
                       " WHERE j.id = %s AND a.attempt = %s", (job_id, attempt))
        return row["node"] if row is not None else None

    def list_nodes(self) -> list[NodeRow]:
        return [_node(row) for row in self.all("SELECT * FROM nodes ORDER BY name")]

    def get_node(self, name: str) -> NodeRow | None:
        row = self.one("SELECT * FROM nodes WHERE name = %s", (name,))
        return _node(row) if row else None
