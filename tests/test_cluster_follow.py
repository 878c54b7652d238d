"""Two masters in this process on one SQLite file, over real CURVE sockets: a client finds and follows the leader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ffrtmp.client import Client
from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.leadership import LeaseTimings
from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.security import write_certificates
from tests.conftest import eventually

FAST = LeaseTimings(ttl=1.0, renew_every=0.2, poll_every=0.05)


@dataclass
class Running:
    server: MasterServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.stop_event.set()
        self.thread.join(10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Running, Running, Path]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    write_certificates(keys, "master")
    running = []
    for name in ("m1", "m2"):
        server = MasterServer(MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / name,
                                            db=tmp_path / "shared.db", cert=keys / "master.key",
                                            key=keys / "master.key_secret", metrics=False, name=name,
                                            lease=FAST, config=MasterConfig(store_min_free=0)))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append(Running(server, thread))
        if name == "m1":
            eventually(lambda: running[0].server.member.leading, message="m1 to lead")
    yield running[0], running[1], keys / "master.key"
    for one in running:
        one.stop()


def test_a_client_sent_to_the_standby_follows_it_to_the_leader(pair: tuple[Running, Running, Path]) -> None:
    leader, standby, master_key = pair
    assert not standby.server.member.leading
    with Client(standby.server.url, master_key=str(master_key), timeout=5.0) as client:
        job = client.submit("t", engine="null")
        assert client.master == leader.server.url and client.masters.learned == [leader.server.url]
        assert client.get(job)["status"] == "pending"
    with Client(standby.server.url, master_key=str(master_key), timeout=5.0) as client:
        status = client.cluster()  # answered by the standby itself
        assert client.master == standby.server.url
    assert (status["leader"], status["term"], status["address"]) == ("m1", 1, leader.server.url)


def test_a_client_with_both_masters_moves_on_when_the_leader_stops(pair: tuple[Running, Running, Path]) -> None:
    leader, standby, master_key = pair
    with Client(f"{leader.server.url},{standby.server.url}", master_key=str(master_key), timeout=5.0) as client:
        first = client.submit("t", engine="null")
        leader.stop()
        eventually(lambda: standby.server.member.leading, message="m2 to lead")
        second = client.submit("t", engine="null")
        assert client.master == standby.server.url
        assert {job["id"] for job in client.list()} == {first, second}
        assert client.cluster()["term"] == 2


def test_a_log_follower_of_a_stopped_leader_follows_the_new_one(pair: tuple[Running, Running, Path]) -> None:
    leader, standby, master_key = pair
    with Client(f"{leader.server.url},{standby.server.url}", master_key=str(master_key), timeout=5.0) as client:
        job = client.submit("t", engine="null")
        waited: dict[str, object] = {}

        def wait() -> None:
            try:
                waited["job"] = client.wait(job, timeout=20)
            except Exception as exc:  # reported by the assertions below
                waited["error"] = exc

        thread = threading.Thread(target=wait)
        thread.start()
        eventually(lambda: leader.server.coordinator.logbook.follower_count() == 1, message="the wait to follow")
        leader.stop()
        eventually(lambda: standby.server.member.leading, message="m2 to lead")
        eventually(lambda: standby.server.coordinator.logbook.follower_count() == 1,
                   message="the wait to follow the new leader")
        with Client(standby.server.url, master_key=str(master_key), timeout=5.0) as admin:
            admin.cancel(job)
        thread.join(20)
    assert "error" not in waited, waited
    assert waited["job"]["status"] == "canceled"  # type: ignore[index]


def test_a_lone_master_whose_lease_ran_out_under_it_keeps_its_workers(tmp_path: Path) -> None:
    """Its loop stalled past the lease (here: the lease is expired under it). Its next write is refused, it
    takes the next term at once and rebuilds; the worker is asked to resync, never refused."""
    import sqlite3

    from tests.inprocess import inprocess_cluster, wait_for_workers

    with inprocess_cluster(tmp_path, store_min_free=0) as cluster:
        cluster.add_worker("w1")
        wait_for_workers(cluster, "w1")
        with sqlite3.connect(cluster.server.db_path) as conn:
            conn.execute("UPDATE leader_lease SET expires_at = 0")
        with cluster.client() as client:
            eventually(lambda: client.cluster()["term"] == 2, message="the next term")
            job = client.submit("t", engine="null", duration=1)
            assert client.wait(job, timeout=30)["status"] == "completed"
            assert [n["status"] for n in client.nodes()] == ["online"]
        agent, thread = cluster.agents[0]
        assert thread.is_alive(), "the worker was not refused"
