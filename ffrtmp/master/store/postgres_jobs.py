"""Submits, reads and the dispatch lanes on PostgreSQL (a mixin of `PostgresStore`; see sqlite.py, dispatch.py).

The lanes are walked as in the SQLite store, one probe of the partial index `jobs_lanes` per lane; PostgreSQL
seeks on a row-value comparison, so the next lane is one query. A lane's head is read `FOR UPDATE SKIP
LOCKED`: inside the dispatch transaction those rows are claimed until it commits, and a second master
dispatching on the same database passes over them instead of waiting or claiming them twice.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from typing import Any, cast

from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.jobspec import JobSpec
from ffrtmp.master.columns import from_json, to_json
from ffrtmp.master.store.api import ActiveAttempt, AttemptRow, HistoryRow, JobRow
from ffrtmp.master.store.dispatch import LANE_COLUMNS, needs_key
from ffrtmp.master.store.postgres_lifecycle import LifecycleRows, job_of, writes
from ffrtmp.master.store.postgres_session import Row
from ffrtmp.master.store.postgres_statistics import PlannerStatistics
from ffrtmp.master.store.sqlite import RECENT_SCAN

INSERT_MANY = """
WITH new AS (
    INSERT INTO jobs (id, status, scenario, queue, priority, weight, engine, params, labels, tenant, max_retries,
                      timeout, created_at, needs)
    SELECT id, 'pending', scenario, queue, priority, weight, engine, params, labels, %s, max_retries, timeout, %s, needs
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[],
                %b::int[], %b::float8[], %b::text[]) WITH ORDINALITY
         AS s(id, scenario, queue, priority, weight, engine, params, labels, max_retries, timeout, needs, ord)
    ORDER BY ord
    RETURNING seq)
INSERT INTO history (job_seq, at, status, reason) SELECT seq, %s, 'pending', 'submitted' FROM new ORDER BY seq"""


def _lane_job(row: Row) -> dict[str, Any]:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("avoid", [])):
        job[key] = from_json(job[key], default)
    return job


class JobRows(LifecycleRows):
    @functools.cached_property
    def planner_statistics(self) -> PlannerStatistics:
        return PlannerStatistics(self.url)

    def _after_commit(self) -> None:
        super()._after_commit()
        inserted, self._inserted_jobs = self._inserted_jobs, 0  # a rolled-back submit never counts
        self.planner_statistics.submitted(inserted)
        self.planner_statistics.after_commit()

    @writes
    def insert_jobs(self, specs: Iterable[JobSpec], now: float, default_max_retries: int,
                    tenant: str = "") -> list[str]:
        """One statement for the whole submit: the jobs (seqs in the order given) and their history."""
        rows = []
        for spec in specs:
            retries = default_max_retries if spec.max_retries is None else spec.max_retries
            rows.append((self.new_job_id(), spec.scenario, spec.queue, spec.priority, spec.weight, spec.engine,
                         to_json(spec.params), to_json(spec.labels), retries, spec.timeout,
                         needs_key(spec.engine, spec.params, spec.labels)))
        if not rows:
            return []
        columns = [list(column) for column in zip(*rows, strict=True)]
        self.execute(INSERT_MANY, (tenant, now, *columns, now))
        self._moved(None, "pending", len(rows))
        self._inserted_jobs += len(rows)
        if self._queue_depth is not None:
            self._queue_depth.update((row[2], row[3]) for row in rows)  # (queue, priority) of each new job
        return [row[0] for row in rows]

    @staticmethod
    def new_job_id() -> str:
        """128 random bits in hex (as the SQLite store's ids)."""
        return os.urandom(16).hex()

    def submitted_ids(self, tenant: str, key: str) -> list[str] | None:
        row = self.one("SELECT ids FROM submit_keys WHERE tenant = %s AND key = %s", (tenant, key))
        return None if row is None else list(from_json(row["ids"], []))

    @writes
    def remember_submit(self, tenant: str, key: str, ids: list[str], now: float) -> None:
        self.execute("INSERT INTO submit_keys (tenant, key, ids, created_at) VALUES (%s,%s,%s,%s)",
                     (tenant, key, to_json(ids), now))

    @writes
    def forget_submit_keys(self, before: float) -> int:
        return self.execute("DELETE FROM submit_keys WHERE created_at < %s", (before,)).rowcount

    def resolve_job_id(self, prefix: str, tenant: str | None = None) -> str:
        """A full id or any unique prefix of one; with `tenant`, only that tenant's jobs exist."""
        text = prefix.strip().lower()
        if not text or len(text) > 32 or any(c not in "0123456789abcdef" for c in text):
            raise NotFound(f"no job {prefix!r}")
        rows = self.all("SELECT id FROM jobs WHERE id >= %s AND id < %s AND (%s::text IS NULL OR tenant = %s)"
                        " LIMIT 2", (text, text + "g", tenant, tenant))
        if not rows:
            raise NotFound(f"no job {prefix!r}")
        if len(rows) > 1:
            raise InvalidInput("id", f"{prefix!r} matches several jobs; give more characters")
        return str(rows[0]["id"])

    def get_job(self, job_id: str) -> JobRow | None:
        row = self.one("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return job_of(row) if row else None

    def job_history(self, job_id: str) -> list[HistoryRow]:
        rows = self.all("SELECT at, status, attempt, node, reason FROM history"
                        " WHERE job_seq = (SELECT seq FROM jobs WHERE id = %s) ORDER BY id", (job_id,))
        return [cast(HistoryRow, dict(row)) for row in rows]

    def job_attempts(self, job_id: str) -> list[AttemptRow]:
        rows = self.all("SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, a.started_at,"
                        " a.finished_at, a.error, a.failure FROM jobs j JOIN attempts a ON a.job_seq = j.seq"
                        " WHERE j.id = %s ORDER BY a.attempt", (job_id,))
        return [cast(AttemptRow, dict(row)) for row in rows]

    def list_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None, before: int | None = None) -> list[JobRow]:
        """Newest first; with `before` (a cursor: the last page's smallest seq), the jobs older than it."""
        with closing(self.iter_jobs(status, queue, node, limit, tenant, before)) as rows:
            return list(rows)

    def iter_jobs(self, status: str | None = None, queue: str | None = None, node: str | None = None,
                  limit: int = 50, tenant: str | None = None,
                  before: int | None = None) -> Generator[JobRow, None, None]:
        """`list_jobs` as a generator (read in one go: a page is bounded by `limit`)."""
        where: list[str] = []
        args: list[str | int] = []
        for column, value in (("status", status), ("queue", queue), ("node", node), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        if before is not None:
            where.append("seq < %s")
            args.append(before)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        for row in self.all(sql + " ORDER BY seq DESC LIMIT %s", (*args, limit)):
            yield job_of(row)

    def pending_candidates(self, now: float, limit: int,
                           aged_before: float | None = None) -> Iterator[dict[str, Any]]:
        """Pending jobs in dispatch order whose backoff has passed, at most `limit` (as the SQLite store's)."""
        from ffrtmp.master.fairness import fair_order

        heads = [job for lane in self.pending_lanes(lambda needs: False) for job in self.lane_head(lane, now, limit)]
        yield from fair_order(heads, aged_before)[:limit]

    def pending_by_engine(self) -> dict[str, int]:
        rows = self.all("SELECT engine, count(*) AS n FROM jobs WHERE status = 'pending' GROUP BY engine")
        return {row["engine"]: row["n"] for row in rows}

    def status_counts(self, tenant: str | None = None) -> dict[str, int]:
        if tenant is None:
            if self._counts is None:
                rows = self.all("SELECT status, count(*) AS n FROM jobs GROUP BY status")
                self._counts = Counter({row["status"]: row["n"] for row in rows})
            return {status: n for status, n in self._counts.items() if n}
        rows = self.all("SELECT status, count(*) AS n FROM jobs WHERE tenant = %s GROUP BY status", (tenant,))
        return {row["status"]: row["n"] for row in rows}

    def tenant_pending(self, tenant: str) -> int:
        row = self.one("SELECT count(*) AS n FROM jobs WHERE tenant = %s AND status = 'pending'", (tenant,))
        return int(row["n"]) if row else 0

    def pending_by_queue(self, tenant: str | None = None) -> dict[str, dict[str, int]]:
        """Pending jobs per queue and priority (queue depth), of one tenant or all."""
        depth: dict[str, dict[str, int]] = {}
        if tenant is None and self._queue_depth is not None:
            for (queue, priority), count in self._queue_depth.items():
                if count:
                    depth.setdefault(queue, {})[priority] = count
            return depth
        sql = "SELECT queue, priority, count(*) AS n FROM jobs WHERE status = 'pending'"
        if tenant is None:
            rows = self.all(sql + " GROUP BY queue, priority")
            self._queue_depth = Counter({(row["queue"], row["priority"]): row["n"] for row in rows})
            return self.pending_by_queue()
        for row in self.all(sql + " AND tenant = %s GROUP BY queue, priority", (tenant,)):
            depth.setdefault(row["queue"], {})[row["priority"]] = row["n"]
        return depth

    def recent_endings(self, since: float, scan: int = RECENT_SCAN) -> list[tuple[float, str, str]]:
        """(time, status, tenant) of jobs completed or failed since `since`, from the newest `scan` history rows."""
        rows = self.all(
            "SELECT h.at, h.status, j.tenant FROM history h JOIN jobs j ON j.seq = h.job_seq"
            " WHERE h.id > (SELECT coalesce(max(id), 0) FROM history) - %s AND h.at >= %s"
            " AND h.status IN ('completed', 'failed') ORDER BY h.id", (scan, since))
        return [(row["at"], row["status"], row["tenant"]) for row in rows]

    def active_attempts(self) -> list[ActiveAttempt]:
        rows = self.all(
            "SELECT j.id AS job_id, a.attempt, a.node, a.status, a.assigned_at, j.queue, j.timeout, j.params, j.tenant"
            " FROM jobs j JOIN attempts a ON a.job_seq = j.seq AND a.attempt = j.attempts"
            " WHERE j.status IN ('assigned','running') AND a.status IN ('assigned','running') ORDER BY j.seq")
        return [cast(ActiveAttempt, {**dict(row), "params": from_json(row["params"], {})}) for row in rows]

    # ---- the dispatch lanes (store/dispatch.py) ---------------------------------------------------------

    def _lane_after(self, where: str, args: tuple[Any, ...]) -> tuple[str, str, int] | None:
        row = self.one("SELECT needs, tenant, weight FROM jobs WHERE status = 'pending'" + where +
                       " ORDER BY needs, tenant, weight LIMIT 1", args)
        return (row["needs"], row["tenant"], row["weight"]) if row is not None else None

    def pending_lanes(self, skip: Callable[[str], bool]) -> Iterator[tuple[str, str, int]]:
        """Every (needs, tenant, weight) with pending jobs, in key order; `skip(needs)` True skips that needs
        and all its lanes with one probe."""
        lane = self._lane_after("", ())
        while lane is not None:
            if skip(lane[0]):
                lane = self._lane_after(" AND needs > %s", (lane[0],))
                continue
            yield lane
            lane = self._lane_after(" AND (needs, tenant, weight) > (%s, %s, %s)", lane)

    def lane_head(self, lane: tuple[str, str, int], now: float, limit: int) -> list[dict[str, Any]]:
        """The first `limit` jobs of a lane whose backoff has passed, oldest first (claimed until commit).

        `needs` is matched as a range of one value and the order is the lanes index's own: with an equality
        the planner may walk any index in `seq` order instead and filter (measured: every pending job of
        the other lanes read per pass); this way only `jobs_lanes` gives the order without a sort.
        """
        needs, tenant, weight = lane
        rows = self.all(
            f"SELECT {LANE_COLUMNS} FROM jobs WHERE status = 'pending' AND needs >= %s AND needs <= %s"
            " AND tenant = %s AND weight = %s AND not_before <= %s ORDER BY needs, tenant, weight, seq LIMIT %s"
            " FOR UPDATE SKIP LOCKED", (needs, needs, tenant, weight, now, limit))
        return [_lane_job(row) for row in rows]

    @writes
    def set_needs_reason(self, needs: str, reason: str, above: int, upto: int) -> int:
        """The pending jobs of these needs with a seq in (above, upto] wait for `reason`."""
        return self.execute("UPDATE jobs SET reason = %s WHERE seq > %s AND seq <= %s AND status = 'pending'"
                            " AND needs = %s AND reason IS DISTINCT FROM %s",
                            (reason, above, upto, needs, reason)).rowcount

    def pending_of_engine(self, engine: str, cap: int) -> int:
        """Pending jobs of `engine`, counted up to `cap` (a range of the lanes index: keys start with it)."""
        prefix = json.dumps([engine])[:-1] + ","  # '["null",' (the needs keys of that engine start so)
        row = self.one("SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE status = 'pending'"
                       " AND needs >= %s AND needs < %s LIMIT %s) AS head", (prefix, prefix[:-1] + "-", cap))
        return int(row["n"]) if row else 0

    def pending_seqs(self) -> tuple[int, int]:
        """The oldest pending job's seq and the newest job's (first > last in a store with nothing pending)."""
        row = self.one("SELECT (SELECT min(seq) FROM jobs WHERE status = 'pending') AS first,"
                       " (SELECT coalesce(max(seq), 0) FROM jobs) AS last")
        assert row is not None
        last = int(row["last"])
        return (int(row["first"]) if row["first"] is not None else last + 1, last)
