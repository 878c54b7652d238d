"""Pending jobs by what they need: the dispatch lanes (a mixin of `Store`).

A job's `needs` is its requirements key (engine, codec, labels, the directory of a shared-storage input: what
placement looks at). A lane is the
pending jobs of one (needs, tenant, weight), FIFO inside. Dispatch walks the lanes with a loose index scan
(one index probe per lane, none per job), skips at once every lane whose needs no free node meets, and reads
only the head of the others; so thousands of jobs nobody can run cost one probe, not a scan (F3/H5).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ffrtmp.master import shared_storage
from ffrtmp.master.columns import from_json
from ffrtmp.master.scheduler import NEEDS_METRIC

LANE_COLUMNS = ("seq, id, engine, queue, params, labels, avoid, reason, attempts, tenant, scenario, priority,"
                " timeout, weight, created_at, needs")


def needs_key(engine: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """The requirements key of a job: equal keys mean every node fits both jobs or neither."""
    codec = params.get("codec") if engine != "null" else None
    return _needs_key(engine, codec if isinstance(codec, str) else "", tuple(sorted(labels.items())),
                      _extra_needs(engine, params))


def _extra_needs(engine: str, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Requirements past engine, codec and labels, as (name, value): a `--quality` mode not every FFmpeg worker
    serves (scheduler.quality_missing), and the directory of a shared-storage input (shared_storage.py)."""
    extra: list[tuple[str, str]] = []
    quality = params.get("quality")
    if engine != "null" and isinstance(quality, str) and quality in NEEDS_METRIC:
        extra.append(("quality", quality))
    directory = shared_storage.input_dir(params)
    if directory is not None:
        extra.append((shared_storage.NEED, directory))
    return tuple(extra)


@functools.lru_cache(maxsize=4096)
def _needs_key(engine: str, codec: str, labels: tuple[tuple[str, str], ...],
               extra: tuple[tuple[str, str], ...] = ()) -> str:
    """Cached: a submit of 5,000 jobs has a handful of distinct keys, and this is paid per job. The extra
    requirements come as a fourth element only when there are some: every other key stays as it was."""
    key: list[Any] = [engine, codec, dict(labels), *([dict(extra)] if extra else [])]
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def needs_of(key: str) -> dict[str, Any]:
    """The job-shaped requirements behind a key (what `scheduler.why_not` reads)."""
    engine, codec, labels, *extra = json.loads(key)
    params: dict[str, Any] = {"codec": codec} if codec else {}
    more: dict[str, Any] = dict(extra[0]) if extra and isinstance(extra[0], dict) else {}
    if isinstance(more.get("quality"), str):  # {"quality": "vmaf"}: read where quality_missing looks
        params["quality"] = more.pop("quality")
    return {"engine": engine, "params": params, "labels": labels, **more}


class DispatchRows:
    """The dispatch part of `Store` (it uses the store's connection)."""

    conn: sqlite3.Connection

    def _first_lane(self, where: str, args: tuple[Any, ...]) -> tuple[str, str, int] | None:
        row = self.conn.execute("SELECT needs, tenant, weight FROM jobs INDEXED BY jobs_lanes"
                                f" WHERE status = 'pending'{where} ORDER BY needs, tenant, weight LIMIT 1",
                                args).fetchone()
        return (row[0], row[1], row[2]) if row is not None else None

    def _next_lane(self, after: tuple[str, str, int] | None, past_needs: str | None) -> tuple[str, str, int] | None:
        """The lane after `after` (or after every lane of `past_needs`). Column by column: a row-value
        comparison seeks on `needs` alone and would walk every job of the current group."""
        if past_needs is not None:
            return self._first_lane(" AND needs > ?", (past_needs,))
        if after is None:
            return self._first_lane("", ())
        needs, tenant, weight = after
        return (self._first_lane(" AND needs = ? AND tenant = ? AND weight > ?", (needs, tenant, weight))
                or self._first_lane(" AND needs = ? AND tenant > ?", (needs, tenant))
                or self._first_lane(" AND needs > ?", (needs,)))

    def pending_lanes(self, skip: Callable[[str], bool]) -> Iterator[tuple[str, str, int]]:
        """Every (needs, tenant, weight) with pending jobs, in key order; `skip(needs)` True skips that needs
        and all its lanes with one probe. Consume before writing on this connection."""
        lane = self._next_lane(None, None)
        while lane is not None:
            if skip(lane[0]):
                lane = self._next_lane(None, lane[0])
                continue
            yield lane
            lane = self._next_lane(lane, None)

    def lane_head(self, lane: tuple[str, str, int], now: float, limit: int) -> list[dict[str, Any]]:
        """The first `limit` jobs of a lane whose backoff has passed, oldest first."""
        rows = self.conn.execute(
            f"SELECT {LANE_COLUMNS} FROM jobs INDEXED BY jobs_lanes WHERE status = 'pending' AND needs = ?"
            " AND tenant = ? AND weight = ? AND not_before <= ? ORDER BY seq LIMIT ?", (*lane, now, limit))
        return [_lane_job(row) for row in rows]

    def set_needs_reason(self, needs: str, reason: str, above: int, upto: int) -> int:
        """The pending jobs of these needs with a seq in (above, upto] wait for `reason` (a range of the primary
        key: its cost is the range's, whatever the group's size)."""
        return self.conn.execute("UPDATE jobs NOT INDEXED SET reason = ? WHERE seq > ? AND seq <= ?"
                                 " AND status = 'pending' AND needs = ? AND reason IS NOT ?",
                                 (reason, above, upto, needs, reason)).rowcount

    def pending_of_engine(self, engine: str, cap: int) -> int:
        """Pending jobs of `engine`, counted up to `cap` (a range of the lanes index: keys start with it)."""
        prefix = json.dumps([engine])[:-1] + ","  # '["null",' (the needs keys of that engine start so)
        return int(self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_lanes WHERE status = 'pending'"
            " AND needs >= ? AND needs < ? LIMIT ?)", (prefix, prefix[:-1] + "-", cap)).fetchone()[0])

    def pending_seqs(self) -> tuple[int, int]:
        """The oldest pending job's seq and the newest job's (first > last in a store with nothing pending)."""
        first = self.conn.execute("SELECT min(seq) FROM jobs INDEXED BY jobs_by_status WHERE status = 'pending'"
                                  ).fetchone()[0]
        last = int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM jobs").fetchone()[0])
        return (int(first) if first is not None else last + 1, last)


def _lane_job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for key, default in (("params", {}), ("labels", {}), ("avoid", [])):
        job[key] = from_json(job[key], default)
    return job
