"""Three real masters on one PostgreSQL database, two real workers and a client given the list of masters.

While jobs (null and tiny real FFmpeg) run: the leader is SIGKILLed, a standby takes over (`cluster status
--json` names it, with a higher term); then the new leader is frozen (SIGSTOP) past its lease, the third master
takes over, and the frozen one is resumed: it steps down, and a submit it received while frozen is refused
there (its write fenced, or answered "not the leader" when its lease check came first) and stored once, by the
leader. Every job completes exactly once: the history holds
one completion per job and no job is lost.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.client import Client
from tests.conftest import eventually
from tests.masterset import MasterSet
from tests.scrape import scrape, value

pytestmark = pytest.mark.slow

TINY = {"resolution": "160x120", "duration": 1, "codec": "h264", "fps": 25, "preset": "ultrafast"}


def start_worker(masters: MasterSet, name: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "ffrtmp", "worker", "--master", masters.addresses, "--master-key",
            masters.master_key, "--name", name, "--work-dir", str(masters.root / f"work-{name}"), "--slots", "2",
            "--prefetch", "0", "--metrics-port", "0", "--engines", "null,ffmpeg"]
    with open(masters.root / "logs" / f"{name}.log", "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=masters.env, cwd=masters.root)


@contextlib.contextmanager
def workers(masters: MasterSet, *names: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(masters, name) for name in names]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def submit_mixed(client: Client, tag: str, ffmpeg_jobs: int, null_jobs: int) -> list[str]:
    ids = [client.submit(f"{tag}-ffmpeg", engine="ffmpeg", **TINY) for _ in range(ffmpeg_jobs)]
    return ids + [client.submit(f"{tag}-null", engine="null") for _ in range(null_jobs)]


def cluster_status(masters: MasterSet) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "cluster", "status", "--json", "--master",
                           masters.addresses, "--master-key", masters.master_key], capture_output=True, text=True,
                          env=masters.env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def completions(url: str) -> dict[str, tuple[str, int, int]]:
    """Per job: its status, its completion events in the history, and its completed attempts."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT j.id, j.status,"
            " (SELECT count(*) FROM history h WHERE h.job_seq = j.seq AND h.status = 'completed'),"
            " (SELECT count(*) FROM attempts a WHERE a.job_seq = j.seq AND a.status = 'completed')"
            " FROM jobs j").fetchall()
    return {row[0]: (row[1], int(row[2]), int(row[3])) for row in rows}


def all_completed(client: Client, ids: list[str]) -> bool:
    listed = {job["id"]: job["status"] for job in client.list(limit=1000)}
    failed = [job for job in ids if listed.get(job) in ("failed", "canceled")]
    assert not failed, f"jobs failed: {failed}"
    return all(listed.get(job) == "completed" for job in ids)


def test_three_masters_on_postgresql_ride_through_a_killed_and_a_frozen_leader(
        tmp_path: Path, postgres_url: str, ffmpeg: str) -> None:
    with MasterSet(tmp_path, ("m1", "m2", "m3"), db=postgres_url) as masters, \
            workers(masters, "w1", "w2") as procs:
        masters.start_all()
        assert (cluster_status(masters)["leader"], cluster_status(masters)["term"]) == ("m1", 1)
        with masters.client(timeout=5.0) as client:
            submitted = submit_mixed(client, "before", 4, 10)
            eventually(lambda: any(job["status"] == "running" and job["engine"] == "ffmpeg"
                                   for job in client.list(limit=100)), timeout=30,
                       message="an FFmpeg job running on a worker")

            masters.kill("m1")  # SIGKILL, with jobs running
            submitted += submit_mixed(client, "after-kill", 2, 10)  # the client follows to the new leader
            shown = cluster_status(masters)
            leader = shown["leader"]
            assert leader in ("m2", "m3") and shown["term"] == 2, shown
            assert [m["name"] for m in shown["masters"] if m["role"] == "leader"] == [leader]
            eventually(lambda: all_completed(client, submitted), timeout=40,
                       message="the jobs of before and after the kill to complete")
            if "no data channel for files: cannot bind" in masters.log(leader, 400):
                # the default data port was m1's: the new leader takes it over, so outputs are still stored
                assert "data channel for files on port" in masters.log(leader, 400)

            # Freeze the new leader past its lease: the third master takes over.
            third = "m3" if leader == "m2" else "m2"
            masters.signal(leader, signal.SIGSTOP)
            try:
                eventually(lambda: masters.status(third)["leader"] == third, timeout=20,
                           message=f"{third} to take over from the frozen {leader}")
                late: dict[str, Any] = {}

                def submit_to_the_frozen_leader() -> None:
                    with masters.client(masters.address(leader), timeout=20.0) as only_frozen:
                        try:
                            late["id"] = only_frozen.submit("late", engine="null")
                        except Exception as exc:  # reported by the assertions below
                            late["error"] = exc

                sender = threading.Thread(target=submit_to_the_frozen_leader)
                sender.start()
                submitted += submit_mixed(client, "frozen", 1, 5)  # the frozen one is silent: on to the leader
            finally:
                masters.signal(leader, signal.SIGCONT)
            sender.join(30)
            assert "error" not in late and "id" in late, late
            submitted.append(late["id"])
            eventually(lambda: "no longer leads" in masters.log(leader, 400), timeout=15,
                       message=f"the resumed {leader} to step down")
            # Resumed, it either meets the late submit first (its write is refused by the fence) or its lease
            # check first (the renewal is refused), and then answers the submit as a standby. Either way the
            # submit is stored once, by the leader, as checked below.
            said = masters.log(leader, 400)
            refused = said.count("a write was refused")
            assert refused or "its lease was taken over or ran out" in said, said
            families = scrape(f"http://127.0.0.1:{masters.metrics_port(leader)}")
            assert value(families, "ffrtmp_master_leader") == 0
            assert value(families, "ffrtmp_master_stale_writes_refused_total") == refused
            assert value(scrape(f"http://127.0.0.1:{masters.metrics_port(third)}"), "ffrtmp_master_leader") == 1

            eventually(lambda: all_completed(client, submitted), timeout=40, message="every job to complete")
            shown = cluster_status(masters)
            assert (shown["leader"], shown["term"]) == (third, 3), shown
            roles = {m["name"]: m["role"] for m in shown["masters"]}
            assert roles[third] == "leader" and roles[leader] == "standby", roles
        assert all(proc.poll() is None for proc in procs), "the workers rode through both faults"

    stored = completions(postgres_url)
    assert sorted(stored) == sorted(submitted), "none lost, each submit stored once"
    twice = {job: row for job, row in stored.items() if row != ("completed", 1, 1)}
    assert not twice, f"every job completed exactly once: {twice}"
