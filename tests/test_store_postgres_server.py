"""What only PostgreSQL has to get right: claims under concurrency, migrations by two masters at once, round trips
per batch, a hot path that ignores terminal jobs, and errors inside a transaction."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.health import WriteFault
from ffrtmp.master.store.postgres import PostgresStore, open_postgres_store
from ffrtmp.master.store.postgres_schema import MIGRATIONS
from ffrtmp.master.store.postgres_url import postgres_url_of
from ffrtmp.master.store.sqlite import Ending
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


def plan(store: PostgresStore, sql: str, args: tuple[Any, ...]) -> str:
    rows = store.all("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql, args)
    return "\n".join(str(row["QUERY PLAN"]) for row in rows)


def test_terminal_jobs_piling_up_do_not_enter_the_dispatch_path(store: PostgresStore) -> None:
    """Dispatch reads partial indexes of pending jobs: 20,000 finished jobs add no page to its reads."""
    store.insert_jobs(itertools.repeat(spec(), 20_000), T0, 3)
    store.conn.execute("UPDATE jobs SET status = 'completed', finished_at = ? WHERE seq <= 19990", (T0,))
    store.conn.execute("ANALYZE jobs")
    (lane,) = list(store.pending_lanes(lambda needs: False))
    for sql, args in (
            ("SELECT needs, tenant, weight FROM jobs WHERE status = 'pending' ORDER BY needs, tenant, weight LIMIT 1",
             ()),
            ("SELECT seq FROM jobs WHERE status = 'pending' AND needs = %s AND tenant = %s AND weight = %s"
             " AND not_before <= %s ORDER BY seq LIMIT 5", (*lane, T0)),
            ("SELECT min(seq) FROM jobs WHERE status = 'pending'", ())):
        shown = plan(store, sql, args)
        assert "Seq Scan" not in shown and ("jobs_lanes" in shown or "jobs_pending" in shown), shown
    assert len(store.lane_head(lane, T0, 100)) == 10


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


def test_the_coordinator_carries_on_after_its_session_is_killed(postgres_url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.test_coordinator.Store", lambda path: open_postgres_store(postgres_url))
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
    ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
    ("postgres://u:pw@h/db?sslmode=require", "postgres://u:pw@h/db?sslmode=require"),
    ("postgresql:/u@h:5432/db", "postgresql://u@h:5432/db"),  # what a `Path` option makes of the URL
    ("/var/lib/ffrtmp/master.db", None),
    ("postgresql.db", None),
])
def test_which_db_values_are_postgresql_urls(given: str, url: str | None) -> None:
    assert postgres_url_of(given) == url


def test_the_password_never_shows(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    store = open_postgres_store(with_password)  # trust auth: the password is not needed, only carried
    try:
        assert "s3cret" not in store.path and "***" in store.path
    finally:
        store.close()
