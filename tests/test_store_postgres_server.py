"""What only PostgreSQL has to get right: claims under concurrency, migrations by two masters at once, round trips
per batch, a hot path that ignores terminal jobs, and errors inside a transaction."""

from __future__ import annotations

import itertools
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.local import wait_for
from ffrtmp.master.store.health import WriteFault
from ffrtmp.master.store.leases import NotLeader
from ffrtmp.master.store.opening import is_url
from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from ffrtmp.master.store.postgres_schema import MIGRATIONS
from ffrtmp.master.store.sqlite import Ending
from tests import test_dispatch_lanes
from tests.test_coordinator import Cluster
from tests.test_store import T0, spec


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    db = open_postgres_store(postgres_url)
    yield db
    db.close()


def statements(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the store sends from now on (each is one round trip)."""
    sent: list[str] = []
    real: Callable[..., Any] = store.execute

    def counted(sql: Any, args: Any = None) -> Any:
        sent.append(str(sql))
        return real(sql, args)

    monkeypatch.setattr(store, "execute", counted)
    return sent


def test_a_lane_head_read_in_a_transaction_is_skipped_by_another_master(postgres_url: str) -> None:
    a, b = open_postgres_store(postgres_url), open_postgres_store(postgres_url)
    try:
        a.insert_jobs([spec() for _ in range(5)], T0, 3)
        (lane,) = list(a.pending_lanes(lambda needs: False))
        with a.transaction():
            mine = a.lane_head(lane, T0, 2)
            theirs = b.lane_head(lane, T0, 10)  # no wait: the rows a claims are passed over
            assert {job["id"] for job in mine}.isdisjoint(job["id"] for job in theirs)
            assert len(mine) == 2 and len(theirs) == 3
            a.assign_jobs([(job, "n1") for job in mine], T0)
        assert [job["seq"] for job in b.lane_head(lane, T0, 10)] == [job["seq"] for job in theirs]
    finally:
        a.close()
        b.close()


def test_two_masters_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    start = threading.Barrier(2)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def master() -> None:
        start.wait()
        try:
            opened.append(open_postgres_store(postgres_url))
        except BaseException as exc:  # reported below, with the test's own assertion
            errors.append(exc)

    threads = [threading.Thread(target=master) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == [] and len(opened) == 2
        rows = opened[0].conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [row["version"] for row in rows] == [m.version for m in MIGRATIONS]
    finally:
        for db in opened:
            db.close()


def test_another_applications_database_or_a_newer_schema_is_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(InvalidInput, match=r"^db: .*not an ffrtmp store .*invoices"):
        open_postgres_store(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE invoices")
    open_postgres_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    with pytest.raises(InvalidInput, match="newer ffrtmp"):
        open_postgres_store(postgres_url, migrate=False)


def test_a_submit_a_claim_and_a_batch_of_ends_are_one_statement_each(store: PostgresStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sent = statements(store, monkeypatch)
    with store.transaction():
        ids = store.insert_jobs(itertools.repeat(spec(), 300), T0, 3)
    assert len(sent) == 3, sent  # BEGIN, the jobs with their history, COMMIT
    picks = [(job, "n1") for job in store.pending_candidates(T0, 300)]
    sent.clear()
    with store.transaction():
        attempts = store.assign_jobs(picks, T0)
    assert attempts == [1] * 300 and len(sent) == 3
    sent.clear()
    with store.transaction():
        ended = store.finish_jobs([Ending(job_id, 1, "completed", T0 + 1, started_at=T0) for job_id in ids])
    assert all(job is not None and job["status"] == "completed" for job in ended)
    assert len(sent) == 4, sent  # BEGIN, read the jobs (locked), write jobs + attempts + history, COMMIT
    assert store.status_counts() == {"completed": 300}
    assert [h["status"] for h in store.job_history(ids[-1])] == ["pending", "assigned", "running", "completed"]


def recorded(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Every statement the store sends from now on, with its arguments (to EXPLAIN them as sent)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    real: Callable[..., Any] = store.execute

    def kept(sql: Any, args: Any = None) -> Any:
        sent.append((str(sql), tuple(args or ())))
        return real(sql, args)

    monkeypatch.setattr(store, "execute", kept)
    return sent


def plan(store: PostgresStore, sql: str, args: tuple[Any, ...]) -> str:
    rows = store.all("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql, args)
    return "\n".join(str(row["QUERY PLAN"]) for row in rows)


PENDING_INDEXES = {"jobs_lanes", "jobs_pending", "jobs_pending_by_tenant"}
"""The partial indexes of pending jobs: all that dispatch may read."""


def test_terminal_jobs_piling_up_do_not_enter_the_dispatch_path(store: PostgresStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatch reads partial indexes of pending jobs: 20,000 finished jobs add no page to its reads once
    vacuum has removed their old versions (autovacuum runs often on `jobs`: see the schema)."""
    store.insert_jobs(itertools.repeat(spec(), 20_000), T0, 3)
    store.conn.execute("UPDATE jobs SET status = 'completed', finished_at = ? WHERE seq <= 19990", (T0,))
    store.conn.execute("VACUUM ANALYZE jobs")
    sent = recorded(store, monkeypatch)
    (lane,) = list(store.pending_lanes(lambda needs: False))
    assert len(store.lane_head(lane, T0, 100)) == 10
    assert store.pending_seqs() == (19991, 20000)
    monkeypatch.undo()
    for sql, args in sent:
        shown = plan(store, sql, args)
        scans = set(re.findall(r"(?:Index|Index Only|Bitmap Index) Scan (?:Backward )?using (\w+)", shown))
        allowed = PENDING_INDEXES | ({"jobs_pkey"} if "max(seq)" in sql else set())  # the newest job: one edge
        assert "Seq Scan" not in shown and scans and scans <= allowed, shown
        assert _top_buffers(shown) <= 30, shown  # a few pages per row returned (locked), none per finished job


def test_a_burst_of_submits_is_analyzed_so_dispatch_reads_the_first_jobs_of_its_lane_in_order(
        store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After finished jobs, autovacuum's statistics say nothing is pending; planned from them, a lane's head
    read every pending job through the tenant index and sorted them (6.5 ms a pass with 10,000). The store
    analyzes the table itself after such a burst's commit, so the lanes index gives the head in order."""

    def analyses() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'jobs'").fetchone()
            return int(row[0]) if row else 0

    store.insert_jobs(itertools.repeat(spec(), 500), T0, 3)
    store.conn.execute("UPDATE jobs SET status = 'completed', finished_at = ?", (T0,))
    store.conn.execute("ANALYZE jobs")  # what autovacuum would have seen: no job pending
    before, runs = analyses(), store.planner_statistics.runs
    store.insert_jobs(itertools.repeat(spec(), 10_000), T0, 3)
    wait_for(lambda: store.planner_statistics.runs > runs, 30, "the store's ANALYZE after the burst")
    assert analyses() > before and store.planner_statistics.pending_then == 10_000
    sent = recorded(store, monkeypatch)
    (lane,) = list(store.pending_lanes(lambda needs: False))
    assert len(store.lane_head(lane, T0, 16)) == 16
    monkeypatch.undo()
    shown = plan(store, *sent[-1])
    assert "Index Scan using jobs_lanes" in shown and "Sort" not in shown, shown
    store.insert_jobs(itertools.repeat(spec(), 100), T0, 3)
    assert store.planner_statistics.submitted_since == 100, "a small submit is not worth an ANALYZE"


def test_the_analyze_never_fails_a_commit_gives_up_on_a_lock_and_counts_only_committed_submits(
        store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    statistics = store.planner_statistics
    with pytest.raises(ZeroDivisionError), store.transaction():
        store.insert_jobs(itertools.repeat(spec(), 1000), T0, 3)
        raise ZeroDivisionError  # rolled back: no burst
    store.set_quota("acme", 1, None)
    assert statistics.submitted_since == 0 and statistics.runs == 0

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert len(store.insert_jobs(itertools.repeat(spec(), 1000), T0, 3)) == 1000  # committed, said so
    monkeypatch.undo()
    monkeypatch.setattr("ffrtmp.master.store.postgres_statistics.LOCK_TIMEOUT", "200ms")
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute("LOCK TABLE jobs IN SHARE UPDATE EXCLUSIVE MODE")  # as a VACUUM holds it
        store.insert_jobs(itertools.repeat(spec(), 1000), T0, 3)
        wait_for(lambda: not statistics._running, 10, "the ANALYZE giving up on the lock")
        assert statistics.runs == 0
    store.insert_jobs(itertools.repeat(spec(), 1000), T0, 3)  # the next burst, the lock gone
    wait_for(lambda: statistics.runs == 1, 10, "the next burst's ANALYZE")
    assert statistics.pending_then == 3000


def test_a_doomed_transactions_error_does_not_grow_as_the_batch_goes_on(store: PostgresStore,
                                                                        postgres_url: str) -> None:
    """Every message after the lease was lost raises NotLeader and its handler logs it: each time with a
    traceback of its own size, never one that grows by a frame per message."""
    first, second = store.insert_jobs([spec(), spec()], T0, 3)
    store.claim_lease("a", "tcp://a:9000", 1.0)
    store.fence("a", 1)
    lengths: list[int] = []

    def lease_ended() -> bool:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute("SELECT expires_at < clock_timestamp() FROM leader_lease").fetchone()
            return bool(row and row[0])

    with pytest.raises(NotLeader), store.transaction():
        with pytest.raises(NotLeader), store.savepoint():
            store.assign_job(first, "n1", T0)
            wait_for(lease_ended, 10, "the lease's end")
            raise KeyError("a handler's bug")
        for _ in range(50):
            try:
                with store.savepoint():
                    store.get_job(second)
            except NotLeader as exc:
                lengths.append(len(traceback.format_exception(exc)))
    assert len(lengths) == 50 and lengths[-1] == lengths[0]


def test_an_error_caught_inside_a_transaction_never_reads_as_committed(store: PostgresStore) -> None:
    job_id = store.insert_jobs([spec()], T0, 3)[0]
    with pytest.raises(WriteFault), store.transaction():
        store.assign_job(job_id, "n1", T0)
        with pytest.raises(psycopg.errors.UniqueViolation):
            store.remember_submit("", "k", [job_id], T0)
            store.remember_submit("", "k", [job_id], T0)
    assert store.get_job(job_id)["status"] == "pending"  # type: ignore[index]
    with store.transaction():  # a savepoint keeps the rest of the batch
        store.assign_job(job_id, "n1", T0)
        store.remember_submit("", "k", [job_id], T0)
        with pytest.raises(psycopg.errors.UniqueViolation), store.savepoint():
            store.remember_submit("", "k", [job_id], T0)
    assert store.get_job(job_id)["status"] == "assigned"  # type: ignore[index]
    assert store.submitted_ids("", "k") == [job_id]


def test_savepoints_go_out_only_for_blocks_that_send_a_statement(store: PostgresStore) -> None:
    """A batch of messages that send nothing (results and heartbeats are written once per frame) costs no
    round trip; a block's first statement, read or write, gets its savepoint, so a failing read is undone too.
    The first block to send one in a fresh transaction needs none (undoing it is undoing the transaction)."""
    job_id = store.insert_jobs([spec()], T0, 3)[0]
    opened, issued = store.savepoints_opened, store.savepoints_issued
    with store.transaction():
        for _ in range(100):
            with store.savepoint():
                pass  # a message that writes nothing of its own
        with store.savepoint(), store.savepoint():  # nested: the inner statement is the outer block's too
            store.assign_job(job_id, "n1", T0)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation), store.savepoint():
            store.one("SELECT 'x'::int AS n")  # a read that fails: the transaction would be aborted
    assert (store.savepoints_opened - opened, store.savepoints_issued - issued) == (103, 2)
    assert store.get_job(job_id)["status"] == "assigned"  # type: ignore[index]


def test_a_failing_first_block_is_undone_by_a_fresh_begin_and_the_batch_goes_on(store: PostgresStore) -> None:
    """No SAVEPOINT for the transaction's first writer: when it fails, its writes go with a ROLLBACK and a new
    BEGIN (and fence check), and what the batch does after it commits."""
    first, second = store.insert_jobs([spec(), spec()], T0, 3)
    issued = store.savepoints_issued
    with store.transaction():
        with pytest.raises(psycopg.errors.UniqueViolation), store.savepoint():
            store.assign_job(first, "n1", T0)
            store.remember_submit("", "k", [first], T0)
            store.remember_submit("", "k", [first], T0)  # fails: the transaction is aborted until undone
        with store.savepoint():  # fresh again: this one needs none either
            store.assign_job(second, "n1", T0)
    assert store.savepoints_issued == issued
    assert store.get_job(first)["status"] == "pending"  # type: ignore[index]
    assert store.get_job(second)["status"] == "assigned"  # type: ignore[index]
    assert store.submitted_ids("", "k") is None


def test_a_lease_lost_while_a_first_block_is_undone_lets_nothing_of_the_batch_commit(
        store: PostgresStore, postgres_url: str) -> None:
    """The fresh BEGIN checks the fence again; when another master took the lease meanwhile, every later
    statement and the COMMIT raise NotLeader, even where a handler caught the first one and went on."""
    first, second = store.insert_jobs([spec(), spec()], T0, 3)
    store.claim_lease("a", "tcp://a:9000", 1.0)
    store.fence("a", 1)

    def lease_ended() -> bool:  # by the database's clock, read beside the transaction's lock
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute("SELECT expires_at < clock_timestamp() FROM leader_lease").fetchone()
            return bool(row and row[0])

    with pytest.raises(NotLeader), store.transaction():
        with pytest.raises(NotLeader), store.savepoint():  # a handler's error after the lease ran out
            store.assign_job(first, "n1", T0)
            wait_for(lease_ended, 10, "the lease's end")
            store.one("SELECT 'x'::int AS n")
        with pytest.raises(NotLeader):
            store.assign_job(second, "n1", T0)  # a coordinator that swallowed the error goes on: refused
    assert {store.get_job(job)["status"] for job in (first, second)} == {"pending"}  # type: ignore[index]


def test_a_transaction_reads_the_quotas_once_and_sees_its_own_change(store: PostgresStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A submit and its dispatch pass both check the tenants' quotas: one read per transaction."""
    sent = recorded(store, monkeypatch)
    with store.transaction():
        assert store.quotas() == store.quotas() == {}
        store.set_quota("acme", 5, None)
        assert store.quotas() == {"acme": {"max_pending": 5, "max_running": None}}
    reads = [sql for sql, _ in sent if "FROM tenants" in str(sql)]
    assert len(reads) == 2
    store.set_quota("acme", 7, None)
    assert store.quotas()["acme"]["max_pending"] == 7


def test_the_coordinator_carries_on_after_its_session_is_killed(postgres_url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.test_coordinator.SqliteStore", lambda path: open_postgres_store(postgres_url))
    cluster = Cluster(tmp_path)
    try:
        first = cluster.submit()
        pid = cluster.store.one("SELECT pg_backend_pid() AS pid")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid["pid"],))  # type: ignore[index]
        second = cluster.submit()  # the batch begins on a fresh connection
        assert cluster.job(first)["status"] == cluster.job(second)["status"] == "pending"
    finally:
        cluster.store.close()


@pytest.mark.parametrize(("given", "url"), [
    ("postgresql://u@h:5432/db", True),
    ("postgres://u:pw@h/db?sslmode=require", True),
    ("/var/lib/ffrtmp/master.db", False),
    ("postgresql.db", False),
    (Path("postgresql://u@h/db"), False),  # a Path is always a file: `--db` reaches open_store as text
])
def test_which_db_values_are_postgresql_urls(given: str | Path, url: bool) -> None:
    assert is_url(given) is url


def test_listings_read_an_index_in_seq_order_without_sorting(store: PostgresStore) -> None:
    """`jobs list` with any filter walks an index newest first and stops at the page: no sort of all jobs."""
    store.insert_jobs(itertools.repeat(spec(), 2000), T0, 3, tenant="acme")
    store.insert_jobs(itertools.repeat(spec(), 2000), T0, 3, tenant="other")
    store.conn.execute("ANALYZE jobs")
    for where, args in (("", ()), (" WHERE status = %s", ("pending",)), (" WHERE tenant = %s", ("acme",)),
                        (" WHERE status = %s AND tenant = %s", ("pending", "acme"))):
        shown = plan(store, f"SELECT * FROM jobs{where} ORDER BY seq DESC LIMIT %s", (*args, 5))
        assert "Sort" not in shown and "Seq Scan" not in shown, (where, shown)


def _top_buffers(shown: str) -> int:
    """The plan's top node's buffer counts (they include its children's)."""
    for line in shown.split("\n"):
        if "Buffers:" in line:
            return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", line))
    return 0


@pytest.mark.parametrize("kind", ["unplaceable", "runnable"])
def test_a_dispatch_pass_reads_as_many_pages_with_60_or_6000_jobs_in_its_lanes(
        kind: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loose index scan on PostgreSQL: skipped groups and the jobs behind a lane's head cost nothing."""
    costs = []
    for count in (60, 6000):
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        monkeypatch.setattr("tests.test_coordinator.SqliteStore", lambda path: open_postgres_store(postgres_url))
        cluster = Cluster(tmp_path / str(count))
        try:
            if kind == "unplaceable":
                test_dispatch_lanes.insert(cluster, count, labels={"gpu": "a100"}, queue="live", priority="high")
                test_dispatch_lanes.insert(cluster, count, engine="ffmpeg", codec="h264_nvenc")
                test_dispatch_lanes.insert(cluster, 10)
                cluster.hello(b"w1", "alpha", slots=20)  # takes the 10 runnable jobs: 10 slots stay free
            else:
                test_dispatch_lanes.insert(cluster, count, tenant="a")
                test_dispatch_lanes.insert(cluster, count, tenant="b", queue="live")
                cluster.hello(b"w1", "alpha", slots=4)
            for _ in range(5):  # the wait reasons are written, a chunk per pass
                cluster.now += 0.1
                cluster.coordinator.tick(cluster.now)
            first = test_dispatch_lanes.dispatched(cluster, b"w1")[0]
            cluster.store.conn.execute("ANALYZE jobs")
            sent = recorded(cluster.store, monkeypatch)
            if kind == "unplaceable":
                cluster.coordinator.dirty = True
                cluster.coordinator.tick(cluster.now)
            else:
                cluster.result(b"w1", first, 1)  # records the end, frees the slot, and the pass fills it
                assert len(test_dispatch_lanes.dispatched(cluster, b"w1")) == 1
            monkeypatch.undo()
            reads = [(sql, args) for sql, args in sent if sql.lstrip().startswith("SELECT")]
            assert reads and not [sql for sql, _ in sent if sql.startswith("UPDATE jobs SET reason")]
            costs.append(sum(_top_buffers(plan(cluster.store, sql, args)) for sql, args in reads))
        finally:
            cluster.store.close()
    assert costs[1] <= costs[0] + 10, costs
