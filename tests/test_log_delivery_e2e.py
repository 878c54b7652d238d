"""Log lines and followers across a master restart, with real processes and a real, chatty FFmpeg.

The job transcodes a source with thousands of corrupted bytes, so FFmpeg reports decode errors by the
hundred a second. Every seq of the attempt must be stored, or the gap must start with the worker's marker;
a follower must print exactly the stored lines, once each, although the master went away under it.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.master.server import STATE_FILE
from tests.conftest import eventually
from tests.partition import Partition
from tests.scrape import scrape, value

pytestmark = pytest.mark.slow

FAST = ["--heartbeat-interval", "200ms", "--node-timeout", "3s"]
"""A worker reconnects after 3 s without a word from its master (the retry backoff stays 5 s, so a worker
that comes back at once adopts its own attempt again)."""


@pytest.fixture(scope="module")
def chatty_source(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> str:
    """30 s of 320x180 H.264 in MPEG-TS with 6,000 bytes flipped: a transcode logs errors all along."""
    folder = tmp_path_factory.mktemp("chatty")
    clean, bad = folder / "clean.ts", folder / "bad.ts"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=320x180:rate=30:duration=30", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                    str(clean)], check=True, timeout=120)
    data = bytearray(clean.read_bytes())
    rng = random.Random(1)
    for _ in range(6000):
        data[rng.randrange(4096, len(data))] ^= 0xFF
    bad.write_bytes(bytes(data))
    return str(bad)


@pytest.fixture
def cluster(tmp_path: Path, chatty_source: str) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", master_args=FAST,
                      env={"FFRTMP_TIMEOUT": "30", "FFRTMP_INPUT_ROOT": str(Path(chatty_source).parent)}) as local:
        local.start_master(metrics_port=0)
        yield local


def start_worker(cluster: LocalCluster) -> None:
    cluster.start_worker("w1")
    cluster.wait_for_nodes(["w1"], timeout=120)  # a loaded machine probes encoders slowly


def chatty_job(source: str) -> dict[str, Any]:
    return {"scenario": "chatty", "engine": "ffmpeg", "input": source, "resolution": "320x180", "duration": 30,
            "codec": "h264", "preset": "slower", "bitrate": "300k"}


def unmarked_gaps(lines: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Missing seq ranges whose next stored line is not the worker's marker (a marker takes the seq just
    before the first line kept after its gap)."""
    gaps, previous = [], 0
    for line in lines:
        if line["seq"] > previous + 1 and not line["line"].startswith("[ffrtmp: "):
            gaps.append((previous + 1, line["seq"] - 1))
        previous = line["seq"]
    return gaps


def running_with_lines(client: Any, job_id: str, count: int) -> bool:
    job = client.get(job_id)
    return job["status"] == "running" and len(client.logs(job_id)["lines"]) >= count


def restart_master(cluster: LocalCluster, sig: int) -> None:
    assert cluster.master is not None
    cluster.kill(cluster.master, sig)
    cluster.master.wait(timeout=30)
    cluster.start_master(port=cluster.port, metrics_port=0)


def followers(cluster: LocalCluster) -> float | None:
    state = json.loads((cluster.master_dir / STATE_FILE).read_text())
    return value(scrape(f"http://127.0.0.1:{state['metrics_port']}"), "ffrtmp_log_followers")


def test_a_partition_past_the_node_timeout_leaves_no_log_gap_without_a_marker(cluster: LocalCluster,
                                                                                chatty_source: str) -> None:
    """The worker gives up on its connection and opens a new one: what it sent on the old one never
    arrived, and must be sent again once the master has welcomed it back."""
    partition = Partition(cluster.port)
    try:
        cluster.start_worker("w1", "--master", partition.url)
        cluster.wait_for_nodes(["w1"], timeout=120)
        with cluster.client() as client:
            job_id = client.submit_many([chatty_job(chatty_source)])[0]
            eventually(lambda: running_with_lines(client, job_id, 100), timeout=60, message="the job to log")
            partition.cut()
            try:
                eventually(lambda: "reconnecting" in cluster.log_tail("w1"), timeout=30,
                           message="the worker to give up on its connection")
            finally:
                partition.heal()
            final = client.wait(job_id, timeout=180)
            logs = {n: client.logs(job_id, attempt=n)["lines"] for n in range(1, final["attempts"] + 1)}
    finally:
        partition.close()
    assert final["status"] == "completed", final
    # A loaded machine may still be encoding when the worker's lease runs out: it stops attempt 1 (as it
    # must: the master has given it away) and attempt 2 completes. Either way no attempt's log has a gap.
    assert len(logs[1]) > 100
    for lines in logs.values():
        seqs = [line["seq"] for line in lines]
        assert seqs == sorted(set(seqs)), "every seq once, in order"
        assert unmarked_gaps(lines) == []
    # the completed attempt's log runs to the end: x264's summary, then its quality summary (--quality basic)
    last = logs[final["attempts"]]
    assert any("kb/s:" in line["line"] for line in last), "x264's summary"
    assert re.search(r"\b(PSNR|SSIM) .*\b(average|All):", last[-1]["line"]), last[-1]["line"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_followers_keep_going_across_a_master_restart(cluster: LocalCluster, chatty_source: str, stop: int) -> None:
    """SIGTERM: the master tells its followers it stops; SIGKILL: they notice the keep-alives stop."""
    with cluster.client() as client:
        job_id = client.submit_many([chatty_job(chatty_source)])[0]  # pending: no worker yet
    cli = [sys.executable, "-m", "ffrtmp", "jobs"]
    outputs = {name: (cluster.root / f"{name}.out", cluster.root / f"{name}.err") for name in ("follow", "show")}

    def run(name: str, *args: str) -> subprocess.Popen[bytes]:
        out, err = outputs[name]
        with out.open("wb") as stdout, err.open("wb") as stderr:  # files: a full pipe would stall the follower
            return subprocess.Popen([*cli, *args, *cluster.connection_args()], env=cluster.env, stdout=stdout,
                                    stderr=stderr, stdin=subprocess.DEVNULL)

    follow = run("follow", "logs", job_id, "--follow")
    show = run("show", "show", job_id, "--follow", "--json")
    try:
        eventually(lambda: followers(cluster) == 2, timeout=60, message="both followers to subscribe")
        start_worker(cluster)
        with cluster.client() as client:
            eventually(lambda: running_with_lines(client, job_id, 50), timeout=60, message="the job to log")
        restart_master(cluster, stop)
        follow.wait(timeout=180)
        show.wait(timeout=60)
    finally:
        for proc in (follow, show):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out, err = (path.read_bytes() for path in outputs["follow"])
    shown, show_err = (path.read_bytes() for path in outputs["show"])
    assert follow.returncode == 0, err.decode()
    assert show.returncode == 0, show_err.decode()
    assert '"completed"' in shown.decode()
    with cluster.client() as client:
        final = client.get(job_id)
        stored = client.logs(job_id, attempt="all")["lines"]
    assert final["status"] == "completed" and final["attempts"] == 1, final
    printed = out.decode().splitlines()
    assert printed == [line["line"] for line in stored], "each stored line printed once, none missing"
