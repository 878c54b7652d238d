"""Dispatch by requirement lanes (H5/F3): jobs nobody can run never stop the others, cost one probe, say why
they wait; and tenants of equal weight share the slots."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ffrtmp.jobspec import JobSpec, validate_submission
from ffrtmp.master.fairness import fair_order
from ffrtmp.master.store.dispatch import needs_key, needs_of
from ffrtmp.protocol import Kind
from tests.test_coordinator import T0, Cluster


def specs(count: int, **options: Any) -> list[JobSpec]:
    one = validate_submission({"scenario": "t", "engine": "null", **options})
    return [one] * count


def insert(cluster: Cluster, count: int, tenant: str = "", **options: Any) -> list[str]:
    with cluster.store.transaction():
        return cluster.store.insert_jobs(specs(count, **options), cluster.now, 3, tenant=tenant)


def dispatched(cluster: Cluster, route: bytes) -> list[str]:
    return [m.body["job"] for m in cluster.net.take(route, Kind.JOB)]


def test_6000_unplaceable_jobs_ahead_do_not_stop_the_runnable_ones(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    stuck = insert(cluster, 6000, queue="live", priority="high", labels={"gpu": "a100"})
    runnable = insert(cluster, 4000, queue="batch", priority="low")
    cluster.hello(b"w1", "alpha", slots=8)
    assert dispatched(cluster, b"w1") == runnable[:8]
    cluster.hello(b"w2", "beta", slots=4, engines=("ffmpeg",))  # free slots, for none of these jobs
    for _ in range(2):  # the reason is written over a chunk of seqs per pass: 10,000 take two
        cluster.now += 0.1
        cluster.coordinator.tick(cluster.now)
    reasons = {row[0] for row in cluster.store.conn.execute(
        "SELECT reason FROM jobs WHERE status = 'pending' AND labels LIKE '%a100%'")}
    assert reasons == {"no connected worker has engine null / label gpu=a100"}
    assert cluster.job(stuck[-1])["reason"] == "no connected worker has engine null / label gpu=a100"


def statements_of_one_pass(cluster: Cluster) -> list[str]:
    seen: list[str] = []
    cluster.store.conn.set_trace_callback(seen.append)
    try:
        cluster.coordinator.dirty = True
        cluster.coordinator.tick(cluster.now)
    finally:
        cluster.store.conn.set_trace_callback(None)
    return seen


def sqlite_steps_of_one_pass(cluster: Cluster) -> int:
    """SQLite VM instructions run by one dispatch pass (in hundreds): a clock-free measure of its cost."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    cluster.store.conn.set_progress_handler(count, 100)
    try:
        cluster.coordinator.dirty = True
        cluster.coordinator.tick(cluster.now)
    finally:
        cluster.store.conn.set_progress_handler(None, 0)
    return steps[0]


def test_a_pass_costs_the_same_with_60_or_6000_unplaceable_jobs(tmp_path: Path) -> None:
    """Unplaceable groups are skipped with an index probe each: nothing a pass does grows with their jobs."""
    costs = []
    for count in (60, 6000):
        cluster = Cluster(tmp_path / str(count))
        insert(cluster, count, labels={"gpu": "a100"}, queue="live", priority="high")
        insert(cluster, count, engine="ffmpeg", codec="h264_nvenc")
        insert(cluster, 10)
        cluster.hello(b"w1", "alpha", slots=20)  # takes the 10 runnable jobs: 10 slots stay free
        assert len(dispatched(cluster, b"w1")) == 10
        for _ in range(5):  # the wait reasons are written, a chunk per pass
            cluster.now += 0.1
            cluster.coordinator.tick(cluster.now)
        costs.append(sqlite_steps_of_one_pass(cluster))
    assert costs[1] <= costs[0] + 5, costs


def test_the_wait_reason_of_a_group_is_not_rewritten_every_pass(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    insert(cluster, 100, labels={"gpu": "a100"})
    cluster.hello(b"w1", "alpha", slots=1)
    cluster.now += 1
    assert not [s for s in statements_of_one_pass(cluster) if "UPDATE jobs SET reason" in s]


def test_new_jobs_of_a_waiting_group_get_its_reason_at_the_next_pass_and_only_they_are_written(
        tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    first = insert(cluster, 3, labels={"gpu": "a100"})
    cluster.hello(b"w1", "alpha", slots=1)
    cluster.store.conn.execute("UPDATE jobs SET reason = 'marker' WHERE id = ?", (first[0],))
    (late,) = insert(cluster, 1, labels={"gpu": "a100"})
    statements = statements_of_one_pass(cluster)
    assert cluster.job(late)["reason"] == "no connected worker has label gpu=a100"
    assert cluster.job(first[0])["reason"] == "marker", "the group's older jobs were not rewritten"
    assert any("NOT INDEXED" in s for s in statements)


def test_one_tenants_backlog_does_not_starve_another_of_equal_weight(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    flood = insert(cluster, 500, tenant="evil")
    (acme,) = insert(cluster, 1, tenant="acme")
    cluster.hello(b"w1", "alpha", slots=2)
    assert dispatched(cluster, b"w1") == [flood[0], acme]


def test_heavier_jobs_still_go_first_and_fifo_holds_inside_a_tenant(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    light = insert(cluster, 3, tenant="a", queue="batch")
    heavy = insert(cluster, 2, tenant="b", queue="live", priority="high")
    cluster.hello(b"w1", "alpha", slots=4)
    assert dispatched(cluster, b"w1") == [*heavy, *light[:2]]


def test_fair_order_takes_turns_between_tenants_at_equal_weight() -> None:
    def job(seq: int, tenant: str, weight: int = 10) -> dict[str, Any]:
        return {"id": str(seq), "seq": seq, "tenant": tenant, "weight": weight, "created_at": T0 + seq}

    jobs = [job(1, "a"), job(2, "a"), job(3, "a"), job(4, "b"), job(5, "c", 5), job(6, "b")]
    assert [j["id"] for j in fair_order(jobs)] == ["1", "4", "2", "6", "3", "5"]
    assert [j["id"] for j in fair_order(jobs, aged_before=T0 + 2.5)] == ["1", "2", "4", "6", "3", "5"]


def test_requirement_keys_group_exactly_what_placement_looks_at() -> None:
    assert needs_key("ffmpeg", {"codec": "h264", "fps": 30}, {"b": "2", "a": "1"}) == \
        needs_key("ffmpeg", {"codec": "h264", "fps": 60}, {"a": "1", "b": "2"})
    assert needs_key("null", {"codec": "h264"}, {}) == needs_key("null", {}, {})
    assert needs_key("ffmpeg", {"codec": "h264"}, {}) != needs_key("ffmpeg", {"codec": "hevc"}, {})
    assert needs_of(needs_key("ffmpeg", {"codec": "h264"}, {"gpu": "a100"})) == {
        "engine": "ffmpeg", "params": {"codec": "h264"}, "labels": {"gpu": "a100"}}


def test_the_migration_fills_needs_for_jobs_stored_before_it(tmp_path: Path) -> None:
    from ffrtmp.master.store import SqliteStore

    path = tmp_path / "master.db"
    store = SqliteStore(path)
    with store.transaction():
        (job_id,) = store.insert_jobs(specs(1, labels={"gpu": "a100"}), T0, 3)
        store.conn.execute("UPDATE jobs SET needs = ''")
        store.conn.execute("DROP INDEX jobs_lanes")
        store.conn.execute("ALTER TABLE jobs DROP COLUMN needs")
        store.conn.execute("CREATE INDEX jobs_dispatch ON jobs(weight DESC, seq) WHERE status = 'pending'")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm008_dispatch_lanes'")
    store.close()
    again = SqliteStore(path)
    (needs,) = again.conn.execute("SELECT needs FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert needs == needs_key("null", {}, {"gpu": "a100"})
    indexes = {row[0] for row in again.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "jobs_lanes" in indexes and "jobs_dispatch" not in indexes
    again.close()


def test_a_heartbeat_counts_pending_jobs_by_engine_with_a_bounded_read(tmp_path: Path) -> None:
    """A `--burst` worker only asks whether any job is left: 200,000 pending must not cost each heartbeat a scan."""
    from ffrtmp.master.handlers import PENDING_CAP

    cluster = Cluster(tmp_path)
    insert(cluster, PENDING_CAP + 500, labels={"gpu": "a100"})
    insert(cluster, 3, engine="gstreamer", codec="h264")
    cluster.hello(b"w1", "alpha", engines=("null",))
    cluster.hello(b"w2", "beta", engines=("ffmpeg",))
    cluster.net.take(b"w1")
    cluster.net.take(b"w2")
    cluster.deliver(b"w1", Kind.HEARTBEAT, {"jobs": []})
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    assert [m.body for m in cluster.net.take(b"w1", Kind.HEARTBEAT)] == [{"pending": PENDING_CAP}]
    assert [m.body for m in cluster.net.take(b"w2", Kind.HEARTBEAT)] == [{"pending": 0}]


def test_a_new_reason_for_a_big_group_is_written_a_chunk_per_pass(tmp_path: Path) -> None:
    """So a worker joining or leaving never holds the loop for the time of rewriting 200,000 rows."""
    from ffrtmp.master.dispatch import NEEDS_REASON_CHUNK

    cluster = Cluster(tmp_path)
    insert(cluster, 3 * NEEDS_REASON_CHUNK, labels={"gpu": "a100"})
    cluster.hello(b"w1", "alpha", slots=1)

    def with_reason() -> int:
        return int(cluster.store.conn.execute("SELECT count(*) FROM jobs WHERE reason IS NOT NULL").fetchone()[0])

    assert with_reason() == NEEDS_REASON_CHUNK
    for _ in range(3):
        cluster.now += 0.1
        cluster.coordinator.tick(cluster.now)  # the unfinished rewrite keeps the next pass due
    assert with_reason() == 3 * NEEDS_REASON_CHUNK


def test_tenants_take_turns_when_slots_free_one_at_a_time(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    evil = insert(cluster, 50, tenant="evil")
    acme = insert(cluster, 3, tenant="acme")
    cluster.hello(b"w1", "alpha", slots=1)
    order = []
    for _ in range(8):
        (job_id,) = dispatched(cluster, b"w1")
        order.append(job_id)
        cluster.result(b"w1", job_id, 1)  # its slot frees: the next pass places one job
    assert order == [evil[0], acme[0], evil[1], acme[1], evil[2], acme[2], evil[3], evil[4]]


def test_a_tenant_coming_back_starts_level_with_the_others(tmp_path: Path) -> None:
    turns = {"old": 40}

    def job(seq: int, tenant: str) -> dict[str, Any]:
        return {"id": str(seq), "seq": seq, "tenant": tenant, "weight": 10, "created_at": T0}

    assert [j["id"] for j in fair_order([job(1, "busy"), job(2, "busy"), job(3, "new")], turns=turns)] == \
        ["1", "3", "2"]
    assert "old" not in turns


def test_a_pass_costs_the_same_with_60_or_6000_runnable_jobs_in_its_lanes(tmp_path: Path) -> None:
    """Reading a lane's head and stepping to the next lane never walks the jobs behind the head."""
    costs = []
    for count in (60, 6000):
        cluster = Cluster(tmp_path / str(count))
        insert(cluster, count, tenant="a")
        insert(cluster, count, tenant="b", queue="live")
        cluster.hello(b"w1", "alpha", slots=4)
        first = dispatched(cluster, b"w1")[0]
        steps = itertools.count()
        cluster.store.conn.set_progress_handler(lambda: next(steps) and 0, 100)  # noqa: B023 (used at once)
        cluster.result(b"w1", first, 1)  # records the end, frees the slot, and the pass fills it
        cluster.store.conn.set_progress_handler(None, 0)
        assert len(dispatched(cluster, b"w1")) == 1
        costs.append(next(steps))
    assert costs[1] <= costs[0] + 5, costs
