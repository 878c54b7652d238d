"""The per-minute counts behind `ffrtmp top`'s sparklines: per tenant, windowed, rebuilt after a restart."""

from __future__ import annotations

from pathlib import Path

from ffrtmp.master.activity import Activity
from tests.test_coordinator import Cluster

T0 = 1_700_000_040.0  # the start of a minute


def test_counts_per_minute_with_the_current_minute_last() -> None:
    activity = Activity()
    for status, at in (("completed", T0), ("completed", T0 + 59), ("failed", T0 + 60), ("canceled", T0 + 61)):
        activity.record(status, at, "acme")
    assert activity.series(T0 + 61, minutes=3) == {"completed": [0, 2, 0], "failed": [0, 0, 1]}


def test_a_tenant_sees_its_own_jobs_and_the_whole_cluster_is_the_sum() -> None:
    activity = Activity()
    activity.record("completed", T0, "acme")
    activity.record("completed", T0, "globex")
    activity.record("failed", T0, "globex")
    assert activity.series(T0, minutes=1, tenant="acme") == {"completed": [1], "failed": [0]}
    assert activity.series(T0, minutes=1, tenant="globex") == {"completed": [1], "failed": [1]}
    assert activity.series(T0, minutes=1) == {"completed": [2], "failed": [1]}
    assert activity.series(T0, minutes=1, tenant="initech") == {"completed": [0], "failed": [0]}


def test_only_the_window_is_kept_and_late_endings_land_in_their_minute() -> None:
    activity = Activity(minutes=10)
    activity.record("completed", T0, "")
    activity.record("completed", T0 + 10 * 60, "")  # ten minutes later: the first falls out of the window
    assert activity.counts[None] == {int(T0 // 60) + 10: [1, 0]}
    activity.record("failed", T0 + 5 * 60, "")  # reported late, still within the window
    activity.record("failed", T0 - 60, "")  # older than the window: ignored
    assert activity.series(T0 + 10 * 60, minutes=6)["failed"] == [1, 0, 0, 0, 0, 0]


def test_a_restarted_master_rebuilds_the_last_hour_from_its_store(tmp_path: Path) -> None:
    first = Cluster(tmp_path)
    first.hello(b"w1", "alpha")
    done = first.submit()
    first.result(b"w1", done, 1)
    failed = first.submit()
    first.result(b"w1", failed, 1, status="failed", failure="invalid_input", error="bad")
    first.store.close()
    second = Cluster(tmp_path)
    second.now = first.now + 30
    second.coordinator.restore(second.now)
    activity = second.request("stats")["body"]["activity"]
    assert (sum(activity["completed"]), sum(activity["failed"])) == (1, 1)
