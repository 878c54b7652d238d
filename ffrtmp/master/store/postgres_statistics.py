"""Keeping the planner's picture of the jobs table current through a burst of submits.

PostgreSQL plans the dispatch's lane query (`lane_head`) from the table's statistics, and autovacuum refreshes
them only after 10 % of the rows changed, at most once a minute. So a burst of submits on a master that has run
jobs before meets statistics that say next to nothing is pending: the planner then reads every pending job
through the tenant index and sorts them all, in every dispatch pass, where the lanes index gives the first few
in order. Measured (`scripts/bench/compare_pg.py --warmup 500`): 6.5 ms a pass with 10,000 pending after 500
completed jobs, 32 ms after 20,000, against 0.05 ms once analyzed; a 10,000-job round ran at 360-420 jobs/s
after a 500-job warm-up, 1,150-1,230 without one.

So the store runs ANALYZE itself when the jobs submitted since its last one outnumber twice those pending then
(and at least MIN_BURST): after the commit (another connection sees only committed rows), on a connection of
its own in a thread, so no dispatch waits for it. A failure is logged and tried again with the next burst.
"""

from __future__ import annotations

import logging
import threading

import psycopg

log = logging.getLogger("ffrtmp.master")

MIN_BURST = 1000
"""Submits since the last ANALYZE that are worth one (fewer cannot mislead a plan by much)."""
CONNECT_TIMEOUT = 5
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "60s"
"""An ANALYZE that waits on a lock (a VACUUM, an index built concurrently) or a dead link gives up, so the next
burst gets one."""


class PlannerStatistics:
    def __init__(self, url: str) -> None:
        self.url = url
        self.submitted_since = 0
        """Jobs submitted (in this process) since the last ANALYZE began."""
        self.pending_then = 0
        """Jobs pending when the last ANALYZE ended (0 before the first: the first burst is analyzed)."""
        self.runs = 0
        """ANALYZEs done (tests and benchmarks read it)."""
        self._running = False

    def submitted(self, count: int) -> None:
        self.submitted_since += count

    def after_commit(self) -> None:
        if self._running or self.submitted_since < max(MIN_BURST, 2 * self.pending_then):
            return
        self._running, self.submitted_since = True, 0
        try:
            threading.Thread(target=self._analyze, name="ffrtmp-analyze", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (a limit, the interpreter ending): the commit stands
            self._running = False
            log.warning("could not start the jobs table's ANALYZE (%s); the next burst tries again", exc)

    def _analyze(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, keepalives=1,
                                 keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                                 options=f"-c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}"
                                 ) as conn:
                conn.execute("ANALYZE jobs")
                row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'pending'").fetchone()
            self.pending_then = int(row[0]) if row else 0
            self.runs += 1
        except psycopg.Error as exc:
            log.warning("could not refresh the jobs table's statistics (ANALYZE jobs): %s; dispatch may be slower "
                        "until autovacuum does", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        finally:
            self._running = False
