"""Measured history on PostgreSQL (a mixin of `PostgresStore`; the same results as history.py)."""

from __future__ import annotations

from typing import Any

from ffrtmp.master.store.history import HISTORY_LIMIT, MeasuredJob, check_metric, measured_job
from ffrtmp.master.store.postgres_session import Session


class HistoryRows(Session):
    def measured_jobs(self, resolution: str, fps: int, metric: str, *, codec: str | None = None,
                      tenant: str | None = None, limit: int = HISTORY_LIMIT) -> list[MeasuredJob]:
        """Completed jobs at `resolution` and `fps` that measured `metric`, newest first (history.py)."""
        sql = ("SELECT id, scenario, node, finished_at, params, labels, metrics FROM jobs"
               " WHERE status = 'completed' AND params::jsonb ->> 'resolution' = %s"
               " AND params::jsonb ->> 'fps' = %s AND metrics::jsonb ->> %s IS NOT NULL")
        args: list[Any] = [resolution, str(fps), check_metric(metric)]
        if codec is not None:
            sql += " AND (params::jsonb ->> 'codec' = %s OR metrics::jsonb ->> 'encoder' = %s)"
            args += [codec, codec]
        if tenant is not None:
            sql += " AND tenant = %s"
            args.append(tenant)
        return [measured_job(row) for row in self.all(sql + " ORDER BY seq DESC LIMIT %s", (*args, limit))]
