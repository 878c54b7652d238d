"""`ffrtmp jobs sweep`: one job per bitrate × codec (× preset) under one group id, submitted together; `--wait`
shows the group and exits 1 when any job did not complete; each bad list item is named (exit 2)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from ffrtmp.cli.sweep import group_table, wait_for_group
from tests.inprocess import inprocess_cluster, wait_for_workers
from tests.test_cli_keys import run

TINY = ["--resolution", "160x120", "--fps", "10", "--duration", "1"]


@pytest.mark.parametrize("args, message", [
    (["--bitrates", "1M,3X", "--codecs", "h264"], "bitrates: 3X: '3X' is not a bitrate"),
    (["--bitrates", "1M,900M", "--codecs", "h264"], "bitrates: 900M: '900M' is out of range"),
    (["--bitrates", "1M", "--codecs", "h264,h26#"], "codecs: h26#: 'h26#' must be h264, h265, vp9, av1"),
    (["--bitrates", "1M", "--codecs", "h264", "--presets", "fast,Bad Preset"], "presets: Bad Preset:"),
    (["--bitrates", "1M,,2M", "--codecs", "h264"], "bitrates: '1M,,2M' must be a comma-separated list"),
    (["--bitrates", "1M,1M", "--codecs", "h264"], "bitrates: '1M' is given twice"),
    (["--bitrates", ",".join(f"{k}k" for k in range(100, 1100)), "--codecs", "h264,h265"],
     "2000 combinations; a sweep makes at most 1000"),
    (["--bitrates", "1M", "--codecs", "h264", "--label", "group=mine"], "label: 'group' is the sweep's own"),
    (["--bitrates", "1M", "--codecs", "h264", "--resolution", "9x9"], "resolution:"),
])
def test_bad_lists_are_refused_naming_the_item_before_anything_is_sent(args: list[str], message: str) -> None:
    code, out = run("jobs", "sweep", "--scenario", "s", *args, "--master", "tcp://127.0.0.1:9")
    assert code == 2 and message in " ".join(out.split()), out


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[Callable[..., tuple[int, str]]]:
    """`ffrtmp jobs sweep …` against a real master with one worker (null and FFmpeg engines)."""
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1", slots=4)
        wait_for_workers(cluster, "w1")
        yield lambda *args: run("jobs", "sweep", "--scenario", "sweep", *args, "--master", cluster.url,
                                "--master-key", cluster.master_key)


def test_every_combination_is_one_job_of_the_group_and_wait_reports_them(
        sweep: Callable[..., tuple[int, str]]) -> None:
    code, out = sweep("--bitrates", "500k,1M", "--codecs", "h264,h265", "--presets", "fast,slow", "--engine", "null",
                      *TINY, "--wait", "--json")
    assert code == 0, out
    answer = json.loads(out)
    group, jobs = answer["group"], answer["jobs"]
    assert re.fullmatch(r"[0-9a-f]{8}", group)
    assert {j["status"] for j in jobs} == {"completed"}, "the group label asks nothing of the worker"
    assert {j["labels"]["group"] for j in jobs} == {group}
    combos = {(j["params"]["codec"], j["params"]["preset"], j["params"]["bitrate"]) for j in jobs}
    assert combos == {(c, p, b) for c in ("h264", "h265") for p in ("fast", "slow") for b in ("500k", "1000k")}
    assert {j["params"]["resolution"] for j in jobs} == {"160x120"}


def test_without_wait_the_group_id_comes_first_then_the_job_ids(sweep: Callable[..., tuple[int, str]]) -> None:
    code, out = sweep("--bitrates", "200k,400k,800k", "--codecs", "h264", "--engine", "null", *TINY)
    assert code == 0, out
    group, *ids = out.split()
    assert re.fullmatch(r"[0-9a-f]{8}", group) and len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_wait_exits_1_when_jobs_of_the_group_fail(sweep: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code, out = sweep("--bitrates", "200k,400k", "--codecs", "h264", "--input", str(tmp_path / "missing.mp4"),
                      *TINY, "--wait")
    assert code == 1, out
    assert "2 of 2 jobs of sweep" in out and "did not complete" in out
    assert out.count("failed") >= 2, "the table shows each failed combination"


def test_the_live_view_follows_the_group_until_every_job_ended(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster, cluster.client() as client:
        ids = list(client.submit_many([{"scenario": "sweep", "engine": "null", "bitrate": rate,
                                        "labels": {"group": "g1"}} for rate in ("100k", "200k", "400k")]))
        cluster.add_worker("w1", slots=2)  # joins after the submit: the view sees pending jobs first
        jobs = wait_for_group(client, "g1", ids, live=True)
    assert [j["id"] for j in jobs] == ids and {j["status"] for j in jobs} == {"completed"}


def test_the_progress_table_counts_the_group() -> None:
    jobs = [{"id": "a" * 32, "status": "completed", "params": {"codec": "h264", "bitrate": "500k"},
             "metrics": {"encoder": "libx264", "fps": 240.0, "psnr_db": 38.123}},
            {"id": "b" * 32, "status": "running", "progress": 0.5, "params": {"codec": "h265", "bitrate": "500k"}},
            {"id": "c" * 32, "status": "failed", "params": {"codec": "av1", "bitrate": "500k"}}]
    console = Console(width=160, record=True)
    console.print(group_table("abcd1234", jobs))
    text = console.export_text()
    assert "sweep abcd1234: 1 done · 1 failed · 1 running · 3 in all" in text
    assert "running 50%" in text and "38.12" in text and "libx264" in text


def test_the_group_label_asks_nothing_of_a_worker_while_other_labels_still_do() -> None:
    from ffrtmp.master.scheduler import NodeView, why_not

    node = NodeView(name="w1", slots=1, active=0, engines=frozenset({"null"}), labels={"gpu": "a100"})
    job = {"engine": "null", "params": {}, "labels": {"group": "abcd1234", "gpu": "a100"}}
    assert why_not(job, node) is None
    assert why_not({**job, "labels": {"group": "abcd1234", "gpu": "h100"}}, node) == "label gpu=h100"
