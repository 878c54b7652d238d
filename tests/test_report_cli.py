"""`ffrtmp report` against a real master (in this process, over CURVE): the table, the JSON, `--since`,
`--group`, and the PNG of `--plot`. The master's store is filled through the Store API before it starts."""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ffrtmp.cli.app import app
from ffrtmp.errors import InvalidInput
from ffrtmp.master.store import open_store
from tests.inprocess import InProcessCluster, inprocess_cluster
from tests.test_report import fill

pytestmark = pytest.mark.slow
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    store = open_store(tmp_path / "master" / "master.db", 0)
    fill(store, now=time.time() - 60)
    store.close()
    with inprocess_cluster(tmp_path) as running:
        yield running


def ffrtmp(cluster: InProcessCluster, *args: str) -> Result:
    argv = ["report", *args, "--master", cluster.url, "--master-key", cluster.master_key]
    return CliRunner(env={"COLUMNS": "160"}).invoke(app, argv, catch_exceptions=True)


def test_json_by_encoder_since_a_day(cluster: InProcessCluster) -> None:
    result = ffrtmp(cluster, "--by", "encoder", "--since", "1d", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["by"] == "encoder" and answer["jobs"] == 4 and "points" not in answer
    x264 = next(group for group in answer["groups"] if group["key"] == "libx264")
    assert (x264["jobs"], x264["vmaf"], x264["cost"], x264["currency"]) == (2, 85.0, 1.5, "EUR")
    everything = json.loads(ffrtmp(cluster, "--by", "encoder", "--json").output)
    assert everything["jobs"] == 5, "without --since the older job counts too"


def test_the_table_shows_each_group_and_dashes_for_what_was_not_measured(cluster: InProcessCluster) -> None:
    result = ffrtmp(cluster, "--by", "tenant")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["TENANT", "JOBS", "FPS"] and "VMAF" in line for line in lines), result.output
    beta = next(line for line in lines if line.strip().startswith("beta")).split()
    assert beta[:6] == ["beta", "1", "10.0", "0.50", "500", "-"] and beta[-1] == "-", beta
    acme = next(line for line in lines if line.strip().startswith("acme")).split()
    assert acme[1] == "4" and acme[-1] == "mixed", "EUR and USD in one group: no single sum"
    empty = ffrtmp(cluster, "--group", "no-such-sweep")
    assert empty.exit_code == 0 and "no completed jobs match" in empty.output


def test_plot_writes_a_real_png_of_the_groups_curves(cluster: InProcessCluster, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / ("a-folder-with-a-name-long-enough-to-wrap-" * 2 + "[/b]") / "curves.png"
    out.parent.mkdir(parents=True)  # "[/b]": a closing markup tag, and a folder "b]" in one "...-["
    result = ffrtmp(cluster, "--group", "g1", "--by", "encoder", "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert f"{out}: 1 rate–quality curve" in result.output  # whole: no markup read in it, not broken
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 500)
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (500, 800) and pixels.std() > 0, "decodes, and is not blank"


def test_plot_without_matplotlib_says_what_to_install_before_asking_the_master(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = CliRunner().invoke(app, ["report", "--plot", str(tmp_path / "x.png"), "--master", "tcp://127.0.0.1:9",
                                      "--timeout", "0.2"])
    assert isinstance(result.exception, InvalidInput), result.output
    assert "ffrtmp[plots]" in str(result.exception) and result.exception.field == "plot"
    assert not (tmp_path / "x.png").exists()


def test_a_bad_grouping_is_exit_2_naming_it(cluster: InProcessCluster) -> None:
    result = ffrtmp(cluster, "--by", "colour")
    assert isinstance(result.exception, InvalidInput) and result.exception.field == "by"


def test_plot_of_jobs_without_measured_quality_says_so(cluster: InProcessCluster, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = ffrtmp(cluster, "--group", "g2", "--plot", str(tmp_path / "none.png"))
    assert isinstance(result.exception, InvalidInput) and result.exception.field == "plot"
    assert "--quality" in str(result.exception) and not (tmp_path / "none.png").exists()


def test_a_bad_window_is_refused_naming_since_before_asking_the_master() -> None:
    result = CliRunner().invoke(app, ["report", "--since", "soon", "--master", "tcp://127.0.0.1:9", "--timeout", "0.2"])
    assert isinstance(result.exception, InvalidInput) and result.exception.field == "since"
