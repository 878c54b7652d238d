"""`ffrtmp recommend` from measured history: the store's read (both backends), the choice it makes from the
curves (ffrtmp/recommend.py), the request with its tenant scoping and checks, and the command's output.

The history here is completed jobs stored through the real Store API with the metrics a worker reports
(tests/measured_history.py); tests/test_recommend_e2e.py makes one from real encodes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy.interpolate import PchipInterpolator  # independent of ours (installed with bjontegaard)

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission
from ffrtmp.master.auth import create_key
from ffrtmp.master.store import SqliteStore, Store
from ffrtmp.recommend import Query, recommend
from tests.measured_history import T0, store_measured
from tests.store_backends import BACKENDS
from tests.test_cli_keys import run
from tests.test_coordinator import Cluster

X264 = {"100k": 30.0, "200k": 33.0, "400k": 36.0, "800k": 38.0}
X265 = {"100k": 32.0, "200k": 35.0, "400k": 37.5, "800k": 39.0}


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = BACKENDS[request.param](tmp_path)
    yield opened
    opened.close()


def curve(store: Store, encoder: str, codec: str, points: dict[str, float], metric: str = "psnr_db",
          **extra: Any) -> list[str]:
    return [store_measured(store, codec=codec, bitrate=rate, encoder=encoder, **{metric: q}, **extra)
            for rate, q in points.items()]


# ---- the store's read, on both backends ---------------------------------------------------------------


def test_measured_jobs_are_the_completed_ones_that_measured_the_metric_here(store: Store) -> None:
    wanted = store_measured(store, psnr_db=35.0, encoder="libx264")
    store_measured(store, resolution="320x240", psnr_db=35.0)
    store_measured(store, fps=25, psnr_db=35.0)
    store_measured(store, fps=30, fps_measured=100)  # no quality measured
    store_measured(store, psnr_db=None)
    hevc = store_measured(store, codec="h265", psnr_db=37.0, vmaf=90.0, now=T0 + 10)
    theirs = store_measured(store, psnr_db=36.0, tenant="acme", now=T0 + 20)
    (pending,) = store.insert_jobs([validate_submission({"scenario": "s", "resolution": "160x120", "fps": 30})],
                                   T0, 0)
    (failed,) = store.insert_jobs([validate_submission({"scenario": "s", "resolution": "160x120", "fps": 30})],
                                  T0, 0)
    store.assign_job(failed, "n1", T0)
    store.finish_job(failed, 1, "failed", T0 + 1, error="x", metrics={"psnr_db": 20.0})

    assert [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db")] == [theirs, hevc, wanted]
    assert [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db", limit=1)] == [theirs]
    assert [j["id"] for j in store.measured_jobs("160x120", 30, "vmaf")] == [hevc]
    assert [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db", tenant="acme")] == [theirs]
    assert [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db", codec="libx264")] == [wanted]
    assert [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db", codec="h265")] == [hevc]
    row = store.measured_jobs("160x120", 30, "psnr_db", codec="libx264")[0]
    assert row["params"]["bitrate"] == "1000k" and row["metrics"] == {"psnr_db": 35.0, "encoder": "libx264"}
    assert pending not in [j["id"] for j in store.measured_jobs("160x120", 30, "psnr_db")]
    with pytest.raises(ValueError, match="quality metric"):
        store.measured_jobs("160x120", 30, "psnr_db') OR 1=1 --")


# ---- the choice (SQLite; the read is the same on both) --------------------------------------------------


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteStore(tmp_path / "master.db")
    yield opened
    opened.close()


def ask(store: Store, target: float, metric: str = "psnr_db", codec: str | None = None) -> dict[str, Any]:
    return recommend(store.measured_jobs("160x120", 30, metric, codec=codec), Query("160x120", 30, metric, target,
                                                                                     codec))


def test_the_bitrate_is_read_off_each_measured_curve_and_the_cheapest_is_chosen(sqlite: Store) -> None:
    x264 = curve(sqlite, "libx264", "h264", X264, cost=0.001, currency="EUR", cpu_seconds=0.2)
    x265 = curve(sqlite, "libx265", "h265", X265, cost=0.004, currency="EUR", cpu_seconds=0.9)
    answer = ask(sqlite, 35.0)
    by_encoder = {e["encoder"]: e for e in answer["encoders"]}
    # PCHIP of log10(rate) against quality, as scipy computes it
    expected = 10 ** float(PchipInterpolator(list(X264.values()), [math.log10(int(r[:-1])) for r in X264])(35.0))
    assert by_encoder["libx264"]["bitrate_kbps"] == math.ceil(expected) and 200 < expected < 400
    assert by_encoder["libx264"]["around"] == [200, 400]
    assert by_encoder["libx265"]["bitrate_kbps"] == 200 and by_encoder["libx265"]["around"] == [200]
    chosen = answer["recommendation"]
    assert (chosen["encoder"], chosen["cheapest_by"], chosen["currency"]) == ("libx264", "cost", "EUR")
    assert chosen["cost_per_s"] == pytest.approx(0.001)
    assert chosen["bitrate"] == f"{math.ceil(expected)}k"
    assert f"--codec libx264 --bitrate {math.ceil(expected)}k" in chosen["command"]
    assert "--quality basic" in chosen["command"] and answer["sweeps"] == []
    listed = {m["job"] for e in answer["encoders"] for m in e["measurements"]}
    assert listed == set(x264 + x265), "every measurement used is listed"


def test_without_prices_the_cheapest_is_by_energy_then_cpu_then_bitrate(sqlite: Store) -> None:
    curve(sqlite, "libx264", "h264", X264, cpu_seconds=0.2)
    curve(sqlite, "libx265", "h265", X265, cpu_seconds=0.9)
    chosen = ask(sqlite, 35.0)["recommendation"]
    assert (chosen["encoder"], chosen["cheapest_by"]) == ("libx264", "cpu_seconds")
    assert chosen["cpu_seconds_per_s"] == pytest.approx(0.2)


def test_with_nothing_but_quality_the_lowest_bitrate_wins(sqlite: Store) -> None:
    curve(sqlite, "libx264", "h264", X264)
    curve(sqlite, "libx265", "h265", X265)
    chosen = ask(sqlite, 35.0)["recommendation"]
    assert (chosen["encoder"], chosen["bitrate"], chosen["cheapest_by"]) == ("libx265", "200k", "bitrate")


def test_cost_between_two_measured_bitrates_is_interpolated_in_log_rate(sqlite: Store) -> None:
    for (rate, q), cost in zip(X264.items(), (0.001, 0.002, 0.004, 0.008), strict=True):
        store_measured(sqlite, bitrate=rate, encoder="libx264", psnr_db=q, cost=cost * 2, currency="EUR",
                       duration=2.0)  # per second of video: half of what the 2 s job cost
    chosen = ask(sqlite, 34.5)["recommendation"]
    kbps = chosen["bitrate_kbps"]
    t = math.log(kbps / 200) / math.log(2)
    assert chosen["cost_per_s"] == pytest.approx(0.002 + 0.002 * t)


def test_noise_is_made_monotone_and_repeats_are_averaged(sqlite: Store) -> None:
    curve(sqlite, "libx264", "h264", {"100k": 30.0, "200k": 34.0, "300k": 33.5, "400k": 36.0})
    store_measured(sqlite, bitrate="400k", encoder="libx264", psnr_db=37.0)  # 400k averages to 36.5
    answer = ask(sqlite, 33.6)
    encoder = answer["encoders"][0]
    assert encoder["bitrates_measured"] == 4 and encoder["measured_quality"] == [30.0, 36.5]
    assert 100 < answer["recommendation"]["bitrate_kbps"] <= 200  # 200k and 300k pool to 33.75 ≥ 33.6


def test_too_few_bitrates_give_no_bitrate_but_the_sweep_that_would(sqlite: Store) -> None:
    curve(sqlite, "libx264", "h264", X264)
    curve(sqlite, "libx265", "h265", dict(list(X265.items())[:3]), preset="medium")
    answer = ask(sqlite, 35.0)
    thin = next(e for e in answer["encoders"] if e["encoder"] == "libx265")
    assert thin["status"] == "insufficient" and "3 measured bitrate(s); 4 are needed" in thin["note"]
    assert thin["sweep"] in answer["sweeps"] and answer["recommendation"]["encoder"] == "libx264"
    assert thin["sweep"].startswith("ffrtmp jobs sweep --scenario sweep --resolution 160x120 --fps 30 "
                                    "--codecs libx265 --bitrates ")
    assert "--presets medium --quality basic --wait" in thin["sweep"]
    assert len(thin["sweep"].split("--bitrates ")[1].split()[0].split(",")) == 4


def test_a_target_outside_the_measured_range_is_named_and_a_sweep_beyond_it_suggested(sqlite: Store) -> None:
    curve(sqlite, "libx264", "h264", X264)
    answer = ask(sqlite, 39.5)
    (encoder,) = answer["encoders"]
    assert answer["recommendation"] is None and encoder["status"] == "insufficient"
    assert "target 39.5 is above the measured range 30.00–38.00 (100k–800k)" in encoder["note"]
    rates = encoder["sweep"].split("--bitrates ")[1].split()[0].split(",")
    assert len(rates) == 4 and all(int(r[:-1]) > 800 for r in rates)
    below = ask(sqlite, 25.0)["encoders"][0]
    assert "below" in below["note"]
    assert all(int(r[:-1]) < 100 for r in below["sweep"].split("--bitrates ")[1].split()[0].split(","))


def test_no_history_suggests_a_first_sweep(sqlite: Store) -> None:
    answer = ask(sqlite, 93.0, metric="vmaf")
    assert answer["recommendation"] is None and answer["encoders"] == []
    (sweep,) = answer["sweeps"]
    assert "--codecs h264,h265" in sweep and "--quality vmaf" in sweep and "--resolution 160x120" in sweep
    assert "--codecs av1" in ask(sqlite, 93.0, metric="vmaf", codec="av1")["sweeps"][0]


# ---- the request: checked arguments, a tenant's own history ---------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


ARGS = {"resolution": "160x120", "fps": 30, "metric": "psnr", "target": 35.0}


def test_a_tenant_is_recommended_from_its_own_jobs_only(cluster: Cluster) -> None:
    mine = curve(cluster.store, "libx264", "h264", X264, tenant="acme")
    curve(cluster.store, "libx265", "h265", X265, tenant="other")
    token = create_key(cluster.store, "read", "acme")[1]
    cluster.coordinator.authority._checked = -1e9  # reread the keys now
    reply = cluster.request("recommend", ARGS, key=token)
    assert reply["status"] == 200, reply
    assert {m["job"] for e in reply["body"]["encoders"] for m in e["measurements"]} == set(mine)
    admin = create_key(cluster.store, "admin", None)[1]
    cluster.coordinator.authority._checked = -1e9
    assert len(cluster.request("recommend", ARGS, key=admin)["body"]["encoders"]) == 2


@pytest.mark.parametrize("bad, field", [
    ({"resolution": "huge"}, "resolution"), ({"resolution": None}, "resolution"), ({"fps": 0}, "fps"),
    ({"fps": "30"}, "fps"), ({"metric": "ssim"}, "metric"), ({"target": -1}, "target-psnr"),
    ({"target": "35"}, "target-psnr"), ({"target": True}, "target-psnr"), ({"codec": "../x"}, "codec"),
    ({"codec": 5}, "codec"), ({"metric": "vmaf", "target": 101}, "target-vmaf"),
])
def test_bad_arguments_are_refused_naming_the_field(cluster: Cluster, bad: dict[str, Any], field: str) -> None:
    reply = cluster.request("recommend", {**ARGS, **bad})
    assert reply["status"] == 400 and reply["error"].startswith(f"{field}:"), reply


# ---- the command, against a real master --------------------------------------------------------------


@pytest.fixture
def master_with_history(tmp_path: Path) -> Iterator[Callable[..., tuple[int, str]]]:
    from tests.inprocess import inprocess_cluster

    history = SqliteStore(tmp_path / "master" / "master.db")
    curve(history, "libx264", "h264", X264, cost=0.001, currency="EUR")
    curve(history, "libx265", "h265", dict(list(X265.items())[:2]))
    history.close()
    with inprocess_cluster(tmp_path) as local:
        yield lambda *args: run("recommend", *args, "--master", local.url, "--master-key", local.master_key)


def test_the_command_prints_the_choice_the_measurements_and_the_sweep(
        master_with_history: Callable[..., tuple[int, str]]) -> None:
    code, out = master_with_history("--resolution", "160x120", "--fps", "30", "--target-psnr", "35")
    assert code == 0, out
    assert "recommended: libx264 at" in out and "cheapest by cost" in out
    assert "libx265: not enough: 2 measured bitrate(s)" in out
    assert "ffrtmp jobs sweep --scenario sweep --resolution 160x120 --fps 30 --codecs libx265" in out
    assert out.count("libx264") >= 5, "each measurement is listed"
    code, out = master_with_history("--resolution", "160x120", "--fps", "30", "--target-psnr", "35", "--json")
    assert code == 0 and json.loads(out)["recommendation"]["encoder"] == "libx264"
    code, out = master_with_history("--resolution", "160x120", "--fps", "30")
    assert code == 2 and "target-vmaf: give exactly one of --target-vmaf and --target-psnr" in out
    code, out = master_with_history("--resolution", "160x", "--fps", "30", "--target-vmaf", "90")
    assert code == 2 and "resolution:" in out


def test_the_python_api_answers_as_the_command_does(tmp_path: Path) -> None:
    from ffrtmp import Client
    from tests.inprocess import inprocess_cluster

    history = SqliteStore(tmp_path / "master" / "master.db")
    curve(history, "libx264", "h264", X264)
    history.close()
    with inprocess_cluster(tmp_path) as local, Client(local.url, master_key=local.master_key) as client:
        answer = client.recommend("160x120", 30, target_psnr=35)
        assert answer["recommendation"]["encoder"] == "libx264"
        assert answer == client.request("recommend", ARGS)
        with pytest.raises(InvalidInput, match="target-vmaf"):
            client.recommend("160x120", 30)
        with pytest.raises(InvalidInput, match="^resolution:"):
            client.recommend("160x", 30, target_vmaf=90)


def test_the_http_api_answers_as_the_command_does(tmp_path: Path) -> None:
    from tests.httpapi import http_master

    history = SqliteStore(tmp_path / "master" / "master.db")
    curve(history, "libx264", "h264", X264)
    history.close()
    with http_master(tmp_path) as (cluster, curl), cluster.client() as client:
        answer = curl.get("/api/recommend?resolution=160x120&fps=30&target_psnr=35")
        assert answer.status == 200, answer.text
        assert answer.json() == client.recommend("160x120", 30, target_psnr=35)
        assert answer.json()["recommendation"]["encoder"] == "libx264"
        for query, field in (("resolution=160x120&fps=30", "target-vmaf"), ("fps=30&target_vmaf=90", "resolution"),
                             ("resolution=160x120&fps=x&target_vmaf=90", "fps"),
                             ("resolution=160x120&fps=30&target_vmaf=nan", "target_vmaf")):
            refused = curl.get(f"/api/recommend?{query}")
            assert (refused.status, refused.json()["field"]) == (400, field), refused.text
        report = curl.get("/api/report?by=encoder&points=1")
        assert report.status == 200 and report.json() == client.report(by="encoder", points=True)
        assert report.json()["groups"] and report.json()["points"]
        assert curl.get("/api/report?by=colour").json()["field"] == "by"
        assert curl.get("/api/report?since=-5").json()["field"] == "since"
