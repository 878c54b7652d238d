"""Log lines are delivered only once the master acknowledges them: the worker's spool across a lost
connection, and the master's side (duplicates ignored, the highest stored seq acknowledged), with fake
peers and fixed clocks."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ffrtmp.master.coordinator import Coordinator
from ffrtmp.protocol import Kind, decode, encode
from ffrtmp.worker.logship import LogShipper
from tests.test_coordinator import Cluster
from tests.test_logs import log


class Link:
    """A connection the shipper sends on: frames are queued and count as sent, and `lose()` throws the
    queue away (what a reconnect with LINGER 0 does); `deliver()` hands them to the fake master."""

    def __init__(self) -> None:
        self.queued: list[dict[str, Any]] = []

    def __call__(self, frame: bytes) -> bool:
        message = decode(frame)
        assert message.kind is Kind.LOG
        self.queued.append(message.body)
        return True

    def lose(self) -> None:
        self.queued = []

    def deliver(self, master: FakeMaster) -> None:
        for body in self.queued:
            master.take(body)
        self.queued = []


class FakeMaster:
    """Stores lines past the highest seq per attempt, as the real one does, and acknowledges that seq."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, int], list[tuple[int, str]]] = {}

    def take(self, body: dict[str, Any]) -> None:
        lines = self.stored.setdefault((body["job"], body["attempt"]), [])
        for seq, _at, _stream, text in body["lines"]:
            if not lines or seq > lines[-1][0]:
                lines.append((seq, text))

    def ack(self, ship: LogShipper) -> None:
        for (job, attempt), lines in self.stored.items():
            if lines:
                ship.ack(job, attempt, lines[-1][0])


def line(seq: int) -> tuple[int, float, str, str]:
    return (seq, 1_700_000_000.0 + seq, "stderr", f"line {seq}")


def unmarked_gaps(lines: list[tuple[int, str]]) -> list[tuple[int, int]]:
    gaps, previous = [], 0
    for seq, text in lines:
        if seq > previous + 1 and not text.startswith("[ffrtmp: "):
            gaps.append((previous + 1, seq - 1))
        previous = seq
    return gaps


def test_a_sent_line_stays_spooled_until_acknowledged() -> None:
    link = Link()
    ship = LogShipper(link, max_lines=2, max_age=0.25)
    for seq in range(1, 5):
        ship.add("job", 1, line(seq), now=0.0)
    assert len(link.queued) == 2 and ship.unsent() == 0
    assert ship.pending() == 4, "queued in ZeroMQ is not delivered"
    ship.ack("job", 1, 3)
    assert ship.pending() == 1
    ship.ack("job", 1, 4)
    assert ship.pending() == 0 and ship.spools == {}


def test_lines_lost_with_a_replaced_connection_are_sent_again_after_welcome() -> None:
    link, master = Link(), FakeMaster()
    ship = LogShipper(link, max_lines=10, max_age=0.25)
    for seq in range(1, 11):
        ship.add("job", 1, line(seq), now=0.0)
    link.deliver(master)
    master.ack(ship)
    for seq in range(11, 31):
        ship.add("job", 1, line(seq), now=1.0)
    link.lose()  # the worker reconnects: what ZeroMQ still held is gone
    ship.pause()
    for seq in range(31, 36):
        ship.add("job", 1, line(seq), now=2.0)
    ship.flush(5.0)
    assert link.queued == [], "nothing goes out before the master has welcomed us"
    ship.resend(6.0)
    link.deliver(master)
    master.ack(ship)
    assert [seq for seq, _ in master.stored[("job", 1)]] == list(range(1, 36))
    assert ship.pending() == 0


def test_a_resend_repeats_only_what_was_not_acknowledged() -> None:
    link, master = Link(), FakeMaster()
    ship = LogShipper(link, max_lines=5, max_age=0.25)
    for seq in range(1, 9):
        ship.add("job", 1, line(seq), now=0.0)
    ship.flush(1.0)
    link.deliver(master)
    ship.ack("job", 1, 5)  # the master stored 1-8, but its acknowledgement of 6-8 was lost
    ship.pause()
    ship.resend(2.0)
    assert [entry[0] for body in link.queued for entry in body["lines"]] == [6, 7, 8]


def test_an_unacknowledged_send_is_repeated_after_a_while() -> None:
    link = Link()
    ship = LogShipper(link, max_lines=5, max_age=0.25, resend_after=10.0)
    for seq in range(1, 6):
        ship.add("job", 1, line(seq), now=0.0)
    link.lose()
    ship.flush(1.0)
    ship.flush(10.9)
    assert link.queued == []
    ship.flush(11.0)
    assert [entry[0] for body in link.queued for entry in body["lines"]] == [1, 2, 3, 4, 5]


def test_overflow_of_sent_lines_marks_the_gap_when_they_are_lost() -> None:
    link, master = Link(), FakeMaster()
    ship = LogShipper(link, max_lines=10, max_age=0.25, spool_limit=50)
    for seq in range(1, 201):  # a partition: sends look fine, no acknowledgement comes
        ship.add("job", 1, line(seq), now=0.0)
    assert ship.pending() <= 50
    link.lose()
    ship.pause()
    ship.resend(1.0)
    link.deliver(master)
    stored = master.stored[("job", 1)]
    assert stored[-1][0] == 200
    assert unmarked_gaps(stored) == []
    assert stored[0][1].startswith("[ffrtmp: ") and ship.dropped >= 150


def test_overflow_of_lines_that_did_arrive_adds_no_false_marker() -> None:
    link, master = Link(), FakeMaster()
    ship = LogShipper(link, max_lines=10, max_age=0.25, spool_limit=50)
    for seq in range(1, 201):  # the master is slow to acknowledge, but gets every frame
        ship.add("job", 1, line(seq), now=0.0)
    link.deliver(master)
    stored = master.stored[("job", 1)]
    assert [seq for seq, _ in stored] == list(range(1, 201))
    ship.pause()
    ship.resend(1.0)  # and a reconnect before the acknowledgement: the marker is ignored as a duplicate
    link.deliver(master)
    assert [seq for seq, _ in master.stored[("job", 1)]] == list(range(1, 201))


def test_random_losses_and_reconnects_never_leave_an_unmarked_gap() -> None:
    rng = random.Random(5)
    for _ in range(12):
        link, master = Link(), FakeMaster()
        ship = LogShipper(link, max_lines=rng.randint(1, 20), max_age=0.25, spool_limit=rng.randint(5, 300))
        now = 0.0
        for seq in range(1, 1201):
            now += 0.01
            ship.add("job", 1, line(seq), now=now)
            ship.flush(now)
            event = rng.random()
            if event < 0.02:
                link.deliver(master)
                if rng.random() < 0.7:
                    master.ack(ship)
            elif event < 0.025:
                link.lose()
                ship.pause()
            elif event < 0.035 and not ship.online:
                ship.resend(now)
        ship.resend(now + 1)
        ship.flush_job("job", 1)
        link.deliver(master)
        stored = master.stored[("job", 1)]
        assert stored[-1][0] == 1200
        assert unmarked_gaps(stored) == []


# ---- the master's side ----------------------------------------------------------------------------


def acks(cluster: Cluster, route: bytes) -> list[list[Any]]:
    cluster.deliver(route, Kind.HEARTBEAT, {"jobs": []})
    replies = cluster.net.take(route, Kind.HEARTBEAT)
    return [item for reply in replies for item in reply.body.get("logs", [])]


def stored(cluster: Cluster, job_id: str) -> list[tuple[int, str]]:
    lines = cluster.request("logs", {"id": job_id, "attempt": 1})["body"]["lines"]
    return [(line["seq"], line["line"]) for line in lines]


def test_the_master_ignores_lines_it_has_and_acknowledges_the_highest(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one", "two", "three")
    log(cluster, b"w1", job_id, 1, "two", "three", "four", first_seq=2)  # resent after a reconnect
    assert stored(cluster, job_id) == [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
    assert acks(cluster, b"w1") == [[job_id, 1, 4]]
    assert acks(cluster, b"w1") == [], "each acknowledgement once"
    assert cluster.coordinator.logbook.duplicates == 2


def test_duplicates_are_known_across_a_master_restart(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one", "two")
    cluster.coordinator = Coordinator(cluster.store, cluster.config, cluster.net.send)  # a new master process
    cluster.coordinator.restore(cluster.now)
    cluster.hello(b"w1b", "alpha", running=[{"job": job_id, "attempt": 1}])
    log(cluster, b"w1b", job_id, 1, "one", "two", "three")
    assert stored(cluster, job_id) == [(1, "one"), (2, "two"), (3, "three")]


def test_lines_before_hello_are_not_acknowledged(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"stranger", job_id, 1, "one")
    cluster.deliver(b"stranger", Kind.HEARTBEAT, {"jobs": []})
    assert all("logs" not in m.body for m in cluster.net.take(b"stranger", Kind.HEARTBEAT))
    assert stored(cluster, job_id) == []


def test_a_stale_attempts_lines_are_acknowledged_but_not_stored(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 7, "from an attempt the master never gave")
    assert acks(cluster, b"w1") == [[job_id, 7, 1]], "so the worker stops resending them"
    assert stored(cluster, job_id) == []


def test_lines_whose_write_failed_are_not_acknowledged_and_are_taken_when_resent(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one")
    acks(cluster, b"w1")
    cluster.store.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON logs BEGIN SELECT RAISE(ABORT, 'disk I/O'); END")
    log(cluster, b"w1", job_id, 1, "two", "three", first_seq=2)
    assert acks(cluster, b"w1") == [], "not stored, so not acknowledged"
    cluster.store.conn.execute("DROP TRIGGER refuse")
    log(cluster, b"w1", job_id, 1, "two", "three", first_seq=2)  # the worker sends them again
    assert stored(cluster, job_id) == [(1, "one"), (2, "two"), (3, "three")]
    assert acks(cluster, b"w1") == [[job_id, 1, 3]]


def test_a_result_from_a_worker_not_joined_yet_is_kept_for_after_its_welcome(tmp_path: Path) -> None:
    """A master restarted under a running worker: the result must not be acknowledged (and so forgotten)
    before the worker's HELLO has the attempt adopted, or the finished job runs again."""
    cluster = Cluster(tmp_path)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    cluster.coordinator = Coordinator(cluster.store, cluster.config, cluster.net.send)  # a new master process
    cluster.coordinator.restore(cluster.now)
    cluster.result(b"w1", job_id, 1)
    assert cluster.net.take(b"w1", Kind.ACK) == []
    cluster.hello(b"w1", "alpha", running=[{"job": job_id, "attempt": 1}])
    cluster.result(b"w1", job_id, 1)
    assert [m.body for m in cluster.net.take(b"w1", Kind.ACK)] == [{"job": job_id, "attempt": 1}]
    job = cluster.job(job_id)
    assert job["status"] == "completed" and job["attempts"] == 1


def test_log_lines_in_a_batch_rolled_back_by_a_full_store_are_taken_when_sent_again(tmp_path: Path) -> None:
    """The store fills up (SQLITE_FULL at COMMIT): the batch with the LOG is rolled back, so its lines were
    never stored: no acknowledgement, and their resend after recovery is stored, not ignored as duplicate."""
    from tests.test_store_degraded import big_submit, cap, recover

    cluster = Cluster(tmp_path, store_min_free=0)
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit()
    log(cluster, b"w1", job_id, 1, "one")
    acks(cluster, b"w1")
    cap(cluster)
    lines = {"job": job_id, "attempt": 1, "lines": [[2, cluster.now, "stderr", "two"]]}
    big = {"rid": "big", "op": "submit", "args": {"jobs": [{"scenario": "b", "engine": "null"}] * 3000}}
    cluster.coordinator.handle_batch([(b"w1", encode(Kind.LOG, lines)), (b"client", encode(Kind.REQUEST, big))],
                                     cluster.now)
    assert cluster.coordinator.store_health.degraded
    assert big_submit(cluster)["status"] == 507
    recover(cluster)
    assert acks(cluster, b"w1") == [], "nothing of the rolled-back batch is acknowledged"
    cluster.deliver(b"w1", Kind.LOG, lines)  # the worker sends them again
    assert stored(cluster, job_id) == [(1, "one"), (2, "two")]
    assert acks(cluster, b"w1") == [[job_id, 1, 2]]
