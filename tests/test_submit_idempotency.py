"""Idempotent submits (F5, docs/design.md): a chunk's key makes a retry or rerun return the first ids, not new jobs."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.client import SUBMIT_CHUNK, Client, SubmittedIds
from ffrtmp.errors import MasterUnreachable
from ffrtmp.local import LocalCluster
from ffrtmp.master.coordinator import Coordinator, MasterConfig
from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.master.store import Store
from tests.conftest import eventually
from tests.test_coordinator import T0, Cluster, Net


def submit(cluster: Cluster, count: int, key: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"jobs": [{"scenario": "f5", "engine": "null"}] * count}
    if key is not None:
        args["idempotency_key"] = key
    return cluster.request("submit", args)


def count_jobs(store: Store) -> int:
    return int(store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def test_a_repeated_key_gets_the_first_ids_and_creates_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    first = submit(cluster, 3, "call:0")
    again = submit(cluster, 3, "call:0")
    assert first["status"] == again["status"] == 200
    assert again["body"] == {"ids": first["body"]["ids"], "repeated": True}
    assert count_jobs(cluster.store) == 3
    other = submit(cluster, 3, "call:1")
    assert set(other["body"]["ids"]).isdisjoint(first["body"]["ids"]) and count_jobs(cluster.store) == 6
    unkeyed = [submit(cluster, 1, None)["body"]["ids"][0] for _ in range(2)]
    assert unkeyed[0] != unkeyed[1] and count_jobs(cluster.store) == 8  # no key: every submit is new


def test_a_key_reused_for_another_submission_is_refused_naming_the_field(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    submit(cluster, 3, "k")
    reply = submit(cluster, 4, "k")
    assert reply["status"] == 400 and reply["error"].startswith("idempotency_key: ")
    assert "3 jobs" in reply["error"] and count_jobs(cluster.store) == 3
    assert submit(cluster, 1, "x" * 201)["status"] == 400


def test_keys_survive_a_master_restart_and_are_forgotten_after_their_ttl(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, submit_key_ttl=3600.0)
    ids = submit(cluster, 2, "k")["body"]["ids"]
    cluster.store.close()
    store = Store(tmp_path / "master.db")  # a new master on the same store
    restarted = Coordinator(store, MasterConfig(submit_key_ttl=3600.0, store_min_free=0), Net().send)
    restarted.restore(T0)
    assert store.submitted_ids("", "k") == ids
    restarted.tick(T0 + 3599.0)
    assert store.submitted_ids("", "k") == ids
    restarted.last_maintenance = 0.0
    restarted.tick(T0 + 3601.0)
    assert store.submitted_ids("", "k") is None


def test_submit_many_resends_unanswered_chunks_and_gets_stored_ones_back_by_key(tmp_path: Path) -> None:
    """A real master and client; the master stores the first chunk but its reply is lost, and the other
    chunks are lost before it reads them (as when it is killed mid-call). The client's next round must end
    with every job exactly once."""
    server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / "master", metrics=False,
                                        config=MasterConfig(store_min_free=0)))
    total = 2 * SUBMIT_CHUNK + 10
    jobs = [{"scenario": "f5", "engine": "null"}] * total
    outcome: dict[str, Any] = {}
    client = Client(server.url, master_key=str(tmp_path / "master" / "master.key"), timeout=1.0)

    def call() -> None:
        try:
            outcome["ids"] = client.submit_many(jobs, key="call")
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    frames: list[Any] = []

    def three_chunks() -> bool:
        if server.socket.poll(0.05):
            frames.extend(server.socket.recv_batch(10))
        return len(frames) >= 3

    eventually(three_chunks, timeout=30, message="the client's three chunks")
    send = server.coordinator._send
    server.coordinator._send = lambda route, frame: True  # the reply to chunk 0 is lost with the connection
    server.coordinator.handle_batch(frames[:1], time.time())
    server.coordinator._send = send
    assert count_jobs(server.store) == SUBMIT_CHUNK
    loop = threading.Thread(target=server.run)
    loop.start()
    try:
        thread.join(timeout=60)
        assert "error" not in outcome, outcome
        ids = outcome["ids"]
        assert isinstance(ids, SubmittedIds) and len(ids) == len(set(ids)) == total
        assert ids.repeated == SUBMIT_CHUNK  # chunk 0 came back by its key, not as new jobs
        stored = {row[0] for row in sqlite3.connect(server.db_path).execute("SELECT id FROM jobs")}
        assert stored == set(ids)
    finally:
        client.close()
        server.stop_event.set()
        loop.join(timeout=15)


# ---- slow tier: kill -9 of a real master mid-call ---------------------------------------------------------


def stored_count(cluster: LocalCluster, scenario: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{cluster.master_dir / 'master.db'}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(conn.execute("SELECT count(*) FROM jobs WHERE scenario = ?", (scenario,)).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_master_killed_mid_submit_many_then_a_retry_and_a_rerun_give_exactly_n_jobs(tmp_path: Path) -> None:
    total = 5 * SUBMIT_CHUNK
    jobs = [{"scenario": "f5-kill", "engine": "null"}] * total
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master()
        outcome: dict[str, Any] = {}

        def call() -> None:
            with cluster.client(timeout=3.0) as client:
                try:
                    outcome["ids"] = client.submit_many(jobs, key="rerun-me")
                except MasterUnreachable as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=call)
        thread.start()
        eventually(lambda: stored_count(cluster, "f5-kill") > 0, timeout=60, interval=0.005,
                   message="the first chunk to be stored")
        assert cluster.master is not None
        cluster.kill(cluster.master, signal.SIGKILL)
        cluster.master.wait()
        before = stored_count(cluster, "f5-kill")
        cluster.start_master(port=cluster.port)  # back while the call waits: its next round gets answers
        thread.join(timeout=120)
        assert "error" not in outcome, outcome
        first = outcome["ids"]
        assert len(first) == len(set(first)) == total and stored_count(cluster, "f5-kill") == total
        with cluster.client(timeout=20.0) as client:
            again = client.submit_many(jobs, key="rerun-me")  # the same call once more (a rerun)
        assert list(again) == list(first) and again.repeated == total
        assert stored_count(cluster, "f5-kill") == total
        conn = sqlite3.connect(f"file:{cluster.master_dir / 'master.db'}?mode=ro", uri=True)
        stored = {row[0] for row in conn.execute("SELECT id FROM jobs WHERE scenario = 'f5-kill'")}
        conn.close()
        assert stored == set(first)  # the ids the client holds are the jobs, and no others
        assert before > 0  # the kill came mid-call, with jobs stored already


@pytest.mark.slow
def test_rerunning_jobs_submit_from_creates_nothing_twice_unless_given_a_new_key(tmp_path: Path) -> None:
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"scenario": f"cli-{n}", "engine": "null"}) + "\n" for n in range(7)))
    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_master()

        def run(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--from", str(lines), *extra,
                                   *cluster.connection_args()], capture_output=True, text=True, timeout=120,
                                  env=cluster.env)

        first, again = run(), run()
        assert first.returncode == again.returncode == 0, first.stderr + again.stderr
        assert first.stdout.split() == again.stdout.split() and len(first.stdout.split()) == 7
        assert first.stderr == "" and "7 of these 7 jobs were submitted before" in again.stderr
        fresh = run("--idempotency-key", "second-batch")
        assert fresh.returncode == 0 and set(fresh.stdout.split()).isdisjoint(first.stdout.split())
        assert stored_count_all(cluster) == 14
        bad = run("--idempotency-key", "k" * 151)
        assert bad.returncode == 2 and "idempotency-key" in bad.stderr


def stored_count_all(cluster: LocalCluster) -> int:
    conn = sqlite3.connect(f"file:{cluster.master_dir / 'master.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()
