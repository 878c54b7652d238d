"""The report's figures, on every store backend (contract style), and the `report` operation's arguments and
tenant scoping through a real coordinator. The jobs are completed through the Store API with the metrics a
quality-measuring worker reports (issue 18), so every expected figure below is worked out by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission
from ffrtmp.master.auth import create_key
from ffrtmp.master.store import Ending, Store
from tests.store_backends import BACKENDS
from tests.test_coordinator import Cluster

T0 = 1_700_000_000.0
DAY = 86400.0


def complete(store: Store, metrics: dict[str, Any], *, tenant: str = "", node: str = "n1",
             finished: float = T0, **options: Any) -> str:
    """One job submitted, assigned and completed with `metrics`, through the Store API."""
    spec = validate_submission({"scenario": "s1", "engine": "ffmpeg", **options})
    (job_id,) = store.insert_jobs([spec], finished - 60, 3, tenant=tenant)
    with store.transaction():
        attempt = store.assign_job(job_id, node, finished - 50)["attempt"]
        store.finish_jobs([Ending(job_id, attempt, "completed", finished, metrics=metrics, started_at=finished - 50)])
    return job_id


def quality(psnr: float, ssim: float, vmaf: float | None = None) -> dict[str, Any]:
    return {"psnr_db": psnr, "ssim": ssim, **({"vmaf": vmaf} if vmaf is not None else {})}


def fill(store: Store, now: float = T0) -> None:
    """acme: two libx264 jobs of sweep g1 and one libx265; beta: one libvpx-vp9 on n2, no quality measured;
    plus jobs that must not count: an old one (for --since), a failed one and a pending one; all ending by `now`."""
    complete(store, {"encoder": "libx264", "avg_fps": 100.0, "fps": 999.0, "speed": 4.0, "bitrate": 1000.0,
                     **quality(34.0, 0.95, 80.0), "energy_joules": 3600.0, "cpu_seconds": 10.0, "cost": 0.5,
                     "currency": "EUR"},
             tenant="acme", codec="h264", bitrate="1000k", labels={"group": "g1"}, finished=now)
    complete(store, {"encoder": "libx264", "avg_fps": 50.0, "speed": 2.0, "bitrate": 2000.0,
                     **quality(38.0, 0.97, 90.0), "energy_joules": 7200.0, "cpu_seconds": 20.0, "cost": 1.0,
                     "currency": "EUR"},
             tenant="acme", codec="h264", bitrate="2000k", labels={"group": "g1"}, finished=now)
    complete(store, {"encoder": "libx265", "fps": 30.0, "speed": 1.0, "bitrate": 1500.0, **quality(36.0, 0.96),
                     "energy_joules": 1000.0, "cpu_seconds": 5.0, "cost": 0.25, "currency": "USD"},
             tenant="acme", codec="h265", bitrate="1500k", scenario="s2", finished=now)
    complete(store, {"encoder": "libvpx-vp9", "fps": 10.0, "speed": 0.5, "bitrate": 500.0},
             tenant="beta", node="n2", codec="vp9", bitrate="500k", scenario="s2", labels={"group": "g2"},
             finished=now)
    complete(store, {"encoder": "libx264", "avg_fps": 1.0, **quality(20.0, 0.5, 10.0), "cost": 9.0,
                     "currency": "EUR"},
             tenant="acme", finished=now - 3 * DAY, codec="h264", bitrate="500k", labels={"group": "g1"})
    (failed,) = store.insert_jobs([validate_submission({"scenario": "s1", "engine": "ffmpeg"})], now, 0, tenant="acme")
    with store.transaction():
        attempt = store.assign_job(failed, "n1", now)["attempt"]
        store.finish_jobs([Ending(failed, attempt, "failed", now, metrics=quality(99.0, 1.0, 99.0))])
    store.insert_jobs([validate_submission({"scenario": "s1"})], now, 0, tenant="acme")


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    db = BACKENDS[request.param](tmp_path)
    fill(db)
    yield db
    db.close()


def by_key(rows: list[Any]) -> dict[str | None, dict[str, Any]]:
    return {row["key"]: dict(row) for row in rows}


def test_by_encoder_averages_what_was_measured_and_sums_energy_and_cost(store: Store) -> None:
    rows = store.job_report("encoder", since=T0 - DAY)
    assert [row["key"] for row in rows] == ["libvpx-vp9", "libx264", "libx265"], "sorted by the group's value"
    x264 = by_key(rows)["libx264"]
    assert x264 == {"key": "libx264", "jobs": 2, "fps": 75.0, "speed": 3.0, "bitrate_kbps": 1500.0,
                    "psnr_db": 36.0, "ssim": 0.96, "vmaf": 85.0, "energy_joules": 10800.0, "cpu_seconds": 30.0,
                    "cost": 1.5, "currency": "EUR"}, "avg_fps wins over fps; old, failed, pending jobs left out"
    vp9 = by_key(rows)["libvpx-vp9"]
    assert vp9["jobs"] == 1 and vp9["fps"] == 10.0, "fps when there is no avg_fps"
    assert (vp9["psnr_db"], vp9["vmaf"], vp9["energy_joules"], vp9["cost"], vp9["currency"]) == (None,) * 5, \
        "what was not measured is None, not 0"
    assert by_key(rows)["libx265"]["vmaf"] is None and by_key(rows)["libx265"]["ssim"] == 0.96


def test_each_grouping(store: Store) -> None:
    recent = T0 - DAY
    assert {k: r["jobs"] for k, r in by_key(store.job_report("scenario", since=recent)).items()} == {"s1": 2, "s2": 2}
    assert {k: r["jobs"] for k, r in by_key(store.job_report("codec", since=recent)).items()} == \
        {"h264": 2, "h265": 1, "vp9": 1}
    assert {k: r["jobs"] for k, r in by_key(store.job_report("node", since=recent)).items()} == {"n1": 3, "n2": 1}
    tenants = by_key(store.job_report("tenant", since=recent))
    assert {k: r["jobs"] for k, r in tenants.items()} == {"acme": 3, "beta": 1}
    assert (tenants["acme"]["currency"], tenants["acme"]["cost"]) == ("mixed", None), "EUR and USD make no one sum"
    groups = by_key(store.job_report("group"))
    assert {k: r["jobs"] for k, r in groups.items()} == {None: 1, "g1": 3, "g2": 1}, "no label: the None group"
    assert [row["key"] for row in store.job_report("group")][0] is None, "None first on every backend"


def test_since_group_and_tenant_filter(store: Store) -> None:
    everything = by_key(store.job_report("encoder"))
    assert everything["libx264"]["jobs"] == 3 and everything["libx264"]["cost"] == 10.5, "the old job counts"
    assert [r["jobs"] for r in store.job_report("encoder", group="g1")] == [3]
    assert [r["jobs"] for r in store.job_report("encoder", group="g1", since=T0 - DAY)] == [2]
    assert store.job_report("encoder", group="nope") == []
    beta = store.job_report("encoder", tenant="beta")
    assert [(r["key"], r["jobs"]) for r in beta] == [("libvpx-vp9", 1)]
    assert store.job_report("tenant", tenant="nobody") == []


def test_rate_quality_points_per_encoder_and_requested_bitrate(store: Store) -> None:
    points = store.rate_quality(group="g1")
    assert [(p["encoder"], p["requested_kbps"], p["jobs"]) for p in points] == \
        [("libx264", 500, 1), ("libx264", 1000, 1), ("libx264", 2000, 1)]
    assert points[1] == {"encoder": "libx264", "requested_kbps": 1000, "jobs": 1, "bitrate_kbps": 1000.0,
                         "psnr_db": 34.0, "ssim": 0.95, "vmaf": 80.0}
    assert points[0]["bitrate_kbps"] == 500.0, "no measured bitrate: the requested one"
    assert {p["encoder"] for p in store.rate_quality(tenant="beta")} == {"libvpx-vp9"}


def test_an_unknown_grouping_is_refused_by_name(store: Store) -> None:
    with pytest.raises(InvalidInput, match="by"):
        store.job_report("colour")


# ---- the operation: arguments from the network, and who sees what ----------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    made = Cluster(tmp_path)
    made.now = T0 + 60
    fill(made.store)
    return made


def keyed(cluster: Cluster, role: str, tenant: str) -> str:
    token = create_key(cluster.store, role, tenant)[1]
    cluster.coordinator.authority._checked = -1e9  # reread the keys now
    return token


def test_a_tenant_reports_on_its_own_jobs_and_an_admin_on_all(cluster: Cluster) -> None:
    admin, beta = keyed(cluster, "admin", "ops"), keyed(cluster, "read", "beta")
    everyone = cluster.request("report", {"by": "tenant"}, key=admin)
    assert everyone["status"] == 200, everyone
    assert {g["key"]: g["jobs"] for g in everyone["body"]["groups"]} == {"acme": 4, "beta": 1}
    assert everyone["body"]["jobs"] == 5 and everyone["body"]["by"] == "tenant"
    own = cluster.request("report", {"by": "encoder", "points": True}, key=beta)["body"]
    assert [(g["key"], g["jobs"]) for g in own["groups"]] == [("libvpx-vp9", 1)]
    assert [p["encoder"] for p in own["points"]] == ["libvpx-vp9"], "the curves are scoped too"
    assert cluster.request("report", {"by": "encoder", "group": "g1"}, key=beta)["body"]["groups"] == [], \
        "another tenant's sweep is empty, not visible"


def test_since_is_a_window_back_from_now_and_points_come_only_when_asked(cluster: Cluster) -> None:
    answer = cluster.request("report", {"by": "encoder", "since": DAY})["body"]
    assert answer["since"] == cluster.now - DAY and "points" not in answer
    assert {g["key"]: g["jobs"] for g in answer["groups"]} == {"libvpx-vp9": 1, "libx264": 2, "libx265": 1}
    grouped = cluster.request("report", {"by": "group", "group": "g1", "points": True})["body"]
    assert grouped["groups"] == [{**grouped["groups"][0], "key": "g1", "jobs": 3}]
    assert len(grouped["points"]) == 3


@pytest.mark.parametrize(("args", "field"), [
    ({"by": "colour"}, "by"), ({"by": 3}, "by"), ({"since": -1}, "since"), ({"since": "1d"}, "since"),
    ({"since": True}, "since"), ({"group": ""}, "group"), ({"group": "x" * 300}, "group"),
    ({"group": ["g1"]}, "group"), ({"points": "yes"}, "points"),
])
def test_bad_arguments_are_refused_naming_the_field(cluster: Cluster, args: dict[str, Any], field: str) -> None:
    reply = cluster.request("report", args)
    assert reply["status"] == 400 and reply["error"].startswith(f"{field}: "), reply


def test_a_figure_that_is_not_a_number_costs_only_itself_on_postgresql(tmp_path: Path) -> None:
    """Rows the master did not clean (written by hand, or by an older version): the fast read's cast fails,
    the careful one leaves the figure out."""
    store: Callable[[Path], Store] = BACKENDS["postgresql"]
    db = store(tmp_path)
    try:
        good = complete(db, {"encoder": "libx264", "vmaf": 80.0, "fps": 10.0}, codec="h264")
        bad = complete(db, {"encoder": "libx264", "vmaf": 70.0, "fps": 20.0}, codec="h264")
        db.conn.execute("UPDATE jobs SET metrics = ? WHERE id = ?",
                        ('{"encoder": "libx264", "vmaf": "n/a", "fps": 20.0}', bad))
        (row,) = db.job_report("encoder")
        assert (row["jobs"], row["vmaf"], row["fps"]) == (2, 80.0, 15.0), good
    finally:
        db.close()
