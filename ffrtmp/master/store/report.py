"""Quality and cost reports over completed jobs, aggregated in the database (`ffrtmp report`, SPEC §9).

The report is one GROUP BY over the jobs table: SQLite reads the JSON columns with `json_extract`, PostgreSQL
(postgres_report.py) with `->>` casts; both are built from the tables here, so they report the same figures.
Python only rounds the few rows that come back. Only completed jobs count; figures a job lacks (no VMAF
measured, no price set) are left out of its group's average or sum, not counted as zero.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypedDict, cast

GROUPINGS = ("scenario", "codec", "encoder", "node", "tenant", "group")
"""What `--by` may name: a column, a job parameter, the encoder the worker used, or the sweep's label."""
GROUP_LABEL = "group"
"""The label that ties a sweep's jobs together (`jobs sweep` sets it; `report --group ID` reads it)."""

AVERAGES = (("fps", ("avg_fps", "fps")), ("speed", ("speed",)), ("bitrate_kbps", ("bitrate",)),
            ("psnr_db", ("psnr_db",)), ("ssim", ("ssim",)), ("vmaf", ("vmaf",)))
"""Report column, and the metrics keys it averages (the first a job has: `avg_fps` over the whole encode,
else the last progress `fps`)."""
SUMS = (("energy_joules", "energy_joules"), ("cpu_seconds", "cpu_seconds"), ("cost", "cost"))
QUALITY = ("psnr_db", "ssim", "vmaf")
NUMBER_KEYS = frozenset(k for _, keys in AVERAGES for k in keys) | {k for _, k in SUMS}
"""Metrics keys the report averages or sums: the master stores only finite numbers under them
(master/pricing.py), so SQLite's `avg` never reads a string as 0."""
DIGITS = {"fps": 2, "speed": 3, "bitrate_kbps": 1, "psnr_db": 3, "ssim": 5, "vmaf": 3, "energy_joules": 3,
          "cpu_seconds": 3, "cost": 9}


class ReportRow(TypedDict):
    key: str | None
    """The group's value (None: jobs that lack it, such as jobs of no sweep)."""
    jobs: int
    fps: float | None
    speed: float | None
    bitrate_kbps: float | None
    psnr_db: float | None
    ssim: float | None
    vmaf: float | None
    energy_joules: float | None
    cpu_seconds: float | None
    cost: float | None
    currency: str | None
    """The currency of `cost`; "mixed" (and `cost` None) when the group's jobs were priced in more than one."""


class CurvePoint(TypedDict):
    """One point of an encoder's rate–quality curve: its jobs at one requested bitrate."""

    encoder: str | None
    requested_kbps: int | None
    jobs: int
    bitrate_kbps: float | None
    """The measured bitrate (the worker's), else the requested one."""
    psnr_db: float | None
    ssim: float | None
    vmaf: float | None


def check_grouping(by: str) -> str:
    from ffrtmp.errors import InvalidInput

    if by not in GROUPINGS:
        raise InvalidInput("by", f"{by!r} is not one of {', '.join(GROUPINGS)}")
    return by


def completed_filter(mark: str, since: float | None, group: str | None, tenant: str | None,
                     group_expr: str) -> tuple[str, list[Any]]:
    """The WHERE clause of a report (`mark`: the backend's placeholder) and its arguments."""
    where: list[str] = ["status = 'completed'"]
    args: list[Any] = []
    if since is not None:
        where.append(f"finished_at >= {mark}")
        args.append(since)
    if tenant is not None:
        where.append(f"tenant = {mark}")
        args.append(tenant)
    if group is not None:
        where.append(f"{group_expr} = {mark}")
        args.append(group)
    return " AND ".join(where), args


def rounded(value: Any, column: str) -> float | None:
    return None if value is None else round(float(value), DIGITS.get(column, 3))


def report_row(row: Any) -> ReportRow:
    """A database row (by column name) as the report's row."""
    out: dict[str, Any] = {"key": None if row["key"] is None else str(row["key"]), "jobs": int(row["jobs"])}
    for column, _ in AVERAGES:
        out[column] = rounded(row[column], column)
    for column, _ in SUMS:
        out[column] = rounded(row[column], column)
    out["currency"] = row["currency"]
    if out["currency"] == "mixed":
        out["cost"] = None  # a sum over several currencies means nothing
    return cast(ReportRow, out)


def curve_point(row: Any) -> CurvePoint:
    requested = None if row["requested"] is None else int(row["requested"])
    return CurvePoint(encoder=row["encoder"], requested_kbps=requested, jobs=int(row["jobs"]),
                      bitrate_kbps=rounded(row["bitrate_kbps"], "bitrate_kbps"),
                      psnr_db=rounded(row["psnr_db"], "psnr_db"), ssim=rounded(row["ssim"], "ssim"),
                      vmaf=rounded(row["vmaf"], "vmaf"))


def _metric(key: str) -> str:
    return f"json_extract(metrics, '$.{key}')"


def _first(keys: Sequence[str]) -> str:
    return _metric(keys[0]) if len(keys) == 1 else f"coalesce({', '.join(_metric(k) for k in keys)})"


SQLITE_KEYS = {
    "scenario": "scenario",
    "codec": "json_extract(params, '$.codec')",
    "encoder": "coalesce(json_extract(metrics, '$.encoder'), json_extract(params, '$.codec'))",
    "node": "node",
    "tenant": "tenant",
    "group": f"json_extract(labels, '$.{GROUP_LABEL}')",
}
SQLITE_REQUESTED = "CAST(rtrim(json_extract(params, '$.bitrate'), 'k') AS INTEGER)"


class ReportRows:
    """The report part of `SqliteStore`."""

    conn: sqlite3.Connection

    def job_report(self, by: str, *, since: float | None = None, group: str | None = None,
                   tenant: str | None = None) -> list[ReportRow]:
        key = SQLITE_KEYS[check_grouping(by)]
        where, args = completed_filter("?", since, group, tenant, SQLITE_KEYS["group"])
        figures = [f"avg({_first(keys)}) AS {column}" for column, keys in AVERAGES]
        figures += [f"sum({_metric(k)}) AS {column}" for column, k in SUMS]
        currency = _metric("currency")
        sql = (f"SELECT {key} AS key, count(*) AS jobs, {', '.join(figures)}, "
               f"CASE WHEN count(DISTINCT {currency}) > 1 THEN 'mixed' ELSE max({currency}) END AS currency "
               f"FROM jobs WHERE {where} GROUP BY 1 ORDER BY 1")
        return [report_row(row) for row in self.conn.execute(sql, args)]

    def rate_quality(self, *, since: float | None = None, group: str | None = None,
                     tenant: str | None = None) -> list[CurvePoint]:
        where, args = completed_filter("?", since, group, tenant, SQLITE_KEYS["group"])
        quality = ", ".join(f"avg({_metric(k)}) AS {k}" for k in QUALITY)
        sql = (f"SELECT {SQLITE_KEYS['encoder']} AS encoder, {SQLITE_REQUESTED} AS requested, count(*) AS jobs, "
               f"avg(coalesce({_metric('bitrate')}, {SQLITE_REQUESTED})) AS bitrate_kbps, {quality} "
               f"FROM jobs WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2")
        return [curve_point(row) for row in self.conn.execute(sql, args)]
