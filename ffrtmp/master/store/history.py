"""Measured history: completed jobs whose quality was measured, read for `ffrtmp recommend` (SQLite).

Only the jobs that can answer "which encoder and bitrate meet this quality here": completed, at one resolution
and frame rate, with the asked-for quality metric in their metrics. The filter runs in the database
(json_extract), newest first, bounded, so a big store costs one indexed scan of its completed jobs.
"""

from __future__ import annotations

import sqlite3
from typing import Any, TypedDict

from ffrtmp.master.columns import from_json

QUALITY_METRICS = ("vmaf", "psnr_db", "ssim")
"""The metrics a history may be read by (a whitelist: the name reaches a JSON path)."""
HISTORY_LIMIT = 5000
"""Measurements one read returns at most (the newest): enough for any curve, bounded for the master's loop."""


class MeasuredJob(TypedDict):
    id: str
    scenario: str
    node: str | None
    finished_at: float | None
    params: dict[str, Any]
    labels: dict[str, str]
    metrics: dict[str, Any]


def check_metric(metric: str) -> str:
    if metric not in QUALITY_METRICS:
        raise ValueError(f"quality metric {metric!r} is not one of {', '.join(QUALITY_METRICS)}")
    return metric


def measured_job(row: Any) -> MeasuredJob:
    return MeasuredJob(id=row["id"], scenario=row["scenario"], node=row["node"], finished_at=row["finished_at"],
                       params=from_json(row["params"], {}), labels=from_json(row["labels"], {}),
                       metrics=from_json(row["metrics"], {}))


class HistoryRows:
    """The measured-history part of `Store` (a mixin: it uses the store's connection)."""

    conn: sqlite3.Connection

    def measured_jobs(self, resolution: str, fps: int, metric: str, *, codec: str | None = None,
                      tenant: str | None = None, limit: int = HISTORY_LIMIT) -> list[MeasuredJob]:
        """Completed jobs at `resolution` and `fps` that measured `metric`, newest first; with `codec`, only
        those whose codec or encoder is it; with `tenant`, only that tenant's."""
        sql = ("SELECT id, scenario, node, finished_at, params, labels, metrics FROM jobs"
               " WHERE status = 'completed' AND json_extract(params, '$.resolution') = ?"
               " AND json_extract(params, '$.fps') = ? AND json_extract(metrics, ?) IS NOT NULL")
        args: list[Any] = [resolution, fps, "$." + check_metric(metric)]
        if codec is not None:
            sql += " AND (json_extract(params, '$.codec') = ? OR json_extract(metrics, '$.encoder') = ?)"
            args += [codec, codec]
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        rows = self.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [measured_job(row) for row in rows]
