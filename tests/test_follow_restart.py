"""A client waiting on a job keeps waiting across a graceful master restart (a master in this process,
real CURVE sockets, a worker that runs only null jobs)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.server import MasterOptions, MasterServer
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster, wait_for_workers
from tests.scrape import NULL_ONLY


def test_a_wait_survives_a_graceful_master_restart(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        with cluster.client() as client:
            job_id = client.submit("t", engine="null")  # pending: no worker yet
        outcome: dict[str, Any] = {}

        def wait() -> None:
            with cluster.client(timeout=10.0) as waiter:
                try:
                    outcome["job"] = waiter.wait(job_id, timeout=60)
                except Exception as exc:  # reported below
                    outcome["error"] = exc

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        eventually(lambda: cluster.server.coordinator.logbook.follower_count() == 1, message="the wait to subscribe")
        old = cluster.server
        old.stop_event.set()  # SIGTERM: the master says goodbye to its followers and stops
        cluster.thread.join(timeout=15)
        assert not cluster.thread.is_alive()
        new = MasterServer(MasterOptions(bind="127.0.0.1", port=old.port, data_dir=old.options.data_dir,
                                         metrics=False, config=MasterConfig()))
        cluster.server, cluster.thread = new, threading.Thread(target=new.run, name="master", daemon=True)
        cluster.thread.start()
        eventually(lambda: new.coordinator.logbook.follower_count() == 1, message="the wait to follow again")
        cluster.add_worker("w1", capabilities=NULL_ONLY)
        wait_for_workers(cluster, "w1")
        waiter.join(timeout=30)
    assert "error" not in outcome, outcome
    assert outcome["job"]["status"] == "completed"
