"""Quality and cost reports on PostgreSQL (a mixin of `PostgresStore`; the SQLite twin and the tables both
build from are in report.py).

The JSON columns are text (postgres_schema.py). Each row's metrics are read in one pass by `json_to_record`
into typed columns (2.5x faster than casting to jsonb and extracting each figure: 0.36 s against 0.93 s
for 100,000 jobs, scripts/bench/quality_report.py). The master stores only numbers under the figures'
keys (master/pricing.py); should a row hold something else anyway, that cast fails, and the report is read
again the careful way (`jsonb_typeof` per figure: a non-number is left out), slower but never refused.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ffrtmp.master.store.postgres_session import Row, Session
from ffrtmp.master.store.report import (
    AVERAGES,
    GROUP_LABEL,
    QUALITY,
    SUMS,
    CurvePoint,
    ReportRow,
    check_grouping,
    completed_filter,
    curve_point,
    report_row,
)

FIGURES = tuple(dict.fromkeys([k for _, keys in AVERAGES for k in keys] + [k for _, k in SUMS]))
"""Every metrics key a report reads as a number."""
RECORD = ", ".join([f"{key} float8" for key in FIGURES] + ["encoder text", "currency text"])
REQUESTED = "substring(params::json ->> 'bitrate' from '^[0-9]+')::int"
GROUP = f"labels::json ->> '{GROUP_LABEL}'"


def _keys(figure: Any) -> dict[str, str]:
    """The `--by` expressions, given how a metrics key is read (`figure(key, number)`)."""
    return {"scenario": "scenario", "codec": "params::json ->> 'codec'",
            "encoder": f"coalesce({figure('encoder', False)}, params::json ->> 'codec')", "node": "node",
            "tenant": "tenant", "group": GROUP}


def _fast(key: str, number: bool = True) -> str:
    return f"r.{key}"


def _careful(key: str, number: bool = True) -> str:
    kind = "number" if number else "string"
    value = f"(m ->> '{key}')::float8" if number else f"m ->> '{key}'"
    return f"CASE WHEN jsonb_typeof(m -> '{key}') = '{kind}' THEN {value} END"


def _source(figure: Any, where: str) -> str:
    if figure is _fast:
        return f"jobs, json_to_record(metrics::json) AS r({RECORD}) WHERE {where}"
    # OFFSET 0 keeps the subquery from being inlined, so each row's metrics are parsed once
    return (f"(SELECT scenario, node, tenant, params, labels, metrics::jsonb AS m FROM jobs WHERE {where} "
            "OFFSET 0) AS j")


def _report_sql(figure: Any, by: str, where: str) -> str:
    first = [f"avg(coalesce({', '.join(figure(k) for k in keys)})) AS {column}" for column, keys in AVERAGES]
    sums = [f"sum({figure(k)}) AS {column}" for column, k in SUMS]
    currency = figure("currency", False)
    return (f"SELECT ({_keys(figure)[by]}) COLLATE \"C\" AS key, count(*) AS jobs, {', '.join(first + sums)}, "
            f"CASE WHEN count(DISTINCT {currency}) > 1 THEN 'mixed' ELSE max({currency}) END AS currency "
            f"FROM {_source(figure, where)} GROUP BY 1 ORDER BY 1 NULLS FIRST")


def _points_sql(figure: Any, where: str) -> str:
    quality = ", ".join(f"avg({figure(k)}) AS {k}" for k in QUALITY)
    return (f"SELECT ({_keys(figure)['encoder']}) COLLATE \"C\" AS encoder, {REQUESTED} AS requested, "
            f"count(*) AS jobs, avg(coalesce({figure('bitrate')}, {REQUESTED})) AS bitrate_kbps, {quality} "
            f"FROM {_source(figure, where)} GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST")


class PostgresReportRows(Session):
    """The report part of `PostgresStore`."""

    def _read(self, build: Any, args: list[Any]) -> list[Row]:
        try:
            return self.all(build(_fast), args)
        except psycopg.errors.DataError:  # a figure that is not a number: read it the careful way
            return self.all(build(_careful), args)

    def job_report(self, by: str, *, since: float | None = None, group: str | None = None,
                   tenant: str | None = None) -> list[ReportRow]:
        check_grouping(by)
        where, args = completed_filter("%s", since, group, tenant, GROUP)
        return [report_row(row) for row in self._read(lambda figure: _report_sql(figure, by, where), args)]

    def rate_quality(self, *, since: float | None = None, group: str | None = None,
                     tenant: str | None = None) -> list[CurvePoint]:
        where, args = completed_filter("%s", since, group, tenant, GROUP)
        return [curve_point(row) for row in self._read(lambda figure: _points_sql(figure, where), args)]
