"""A worker given several masters follows the leader: the core on a fixed clock with fake masters (no sockets,
no sleeping), as in test_worker_core.py. Each message the worker sends goes through the real encoder and
decoder and is kept with the address it went to; the tests play the masters' answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission
from ffrtmp.protocol import NOT_LEADER, Kind, decode, encode
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.core import WorkerCore
from ffrtmp.worker.core_options import WorkerOptions
from ffrtmp.worker.encoders import Encoder
from ffrtmp.worker.follow import DOWN_MEMORY, JOIN_PATIENCE, NO_LEADER_BACKOFF
from ffrtmp.worker.runner import Attempt
from ffrtmp.worker.stopping import end_attempts
from tests.conftest import eventually
from tests.test_worker_core import NULL_ONLY

M1, M2, M3 = "tcp://127.0.0.1:7101", "tcp://127.0.0.1:7102", "tcp://127.0.0.1:7103"
STEP = 1 / 32
"""The loop's pass, in simulated seconds (about the real join poll; a binary fraction, so sums are exact)."""


class FakeMasters:
    """The core's link to a list of masters: each message is kept with the address it went to; an address in
    `down` refuses connections (nothing can be queued there, and a probe says so)."""

    def __init__(self) -> None:
        self.core: WorkerCore | None = None
        self.sent: list[tuple[str, Kind, dict[str, Any]]] = []
        self.connections: list[str] = []
        self.down: set[str] = set()

    @property
    def address(self) -> str:
        assert self.core is not None
        return self.core.address

    def send(self, kind: Kind, body: dict[str, Any]) -> bool:
        if self.address in self.down:
            return False
        message = decode(encode(kind, body))
        if message.kind is Kind.BATCH:
            self.sent += [(self.address, Kind(item["k"]), item["b"]) for item in message.body["items"]]
        else:
            self.sent.append((self.address, message.kind, message.body))
        return True

    def reconnect(self) -> None:
        self.connections.append(self.address)

    def handshake_error(self) -> str | None:
        return None

    def master_down(self) -> bool:
        return self.address in self.down

    def wake(self) -> None:
        pass

    def take(self, kind: Kind) -> list[tuple[str, dict[str, Any]]]:
        """(address, body) of each message of `kind` sent since the last take."""
        taken = [(address, body) for address, sent, body in self.sent if sent is kind]
        self.sent = [entry for entry in self.sent if entry[1] is not kind]
        return taken


class Worker:
    def __init__(self, work: Path, masters: str = f"{M1},{M2},{M3}", capabilities: Capabilities = NULL_ONLY,
                 **options: Any) -> None:
        self.mono, self.wall = 1024.0, 1.7e9
        self.link = FakeMasters()
        options.setdefault("heartbeat_interval", 1.0)
        self.core = WorkerCore(WorkerOptions(master=masters, name="w1", work_dir=work, **options), capabilities,
                               self.link, mono=self.mono)
        self.link.core = self.core

    @property
    def address(self) -> str:
        return self.core.address

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def tick(self) -> None:
        self.core.tick(self.wall, self.mono)

    def run(self, seconds: float, until: Any = None) -> float:
        """Pass after pass for `seconds` of simulated time (or until `until()`): the time it took."""
        start = self.mono
        while self.mono - start < seconds - 1e-9:
            self.advance(STEP)
            self.tick()
            if until is not None and until():
                break
        return self.mono - start

    def hear(self, kind: Kind, body: dict[str, Any] | None = None) -> None:
        """A message from the master at the current address."""
        self.core.receive(encode(kind, body), self.wall, self.mono)

    def welcome(self, node_timeout: float = 10.0) -> None:
        self.hear(Kind.WELCOME, {"node": "w1", "heartbeat_interval": 1.0, "node_timeout": node_timeout})

    def refuse(self, leader: str | None) -> None:
        """What a standby answers any worker message with."""
        self.hear(Kind.REFUSED, {"status": NOT_LEADER, "error": "not the leader", "leader": leader,
                                 "name": None if leader is None else "m", "term": 3})

    def null_job(self, job: str) -> None:
        self.hear(Kind.JOB, {"job": job, "attempt": 1, "spec": {
            "engine": "null", "scenario": "t", "queue": "default", "priority": "medium", "labels": {},
            "params": {"duration": 1, "resolution": "160x120", "fps": 25, "codec": "h264"}}})
        self.tick()


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    return Worker(tmp_path / "work")


# ---- the list ---------------------------------------------------------------------------------------------


def test_the_list_is_kept_in_order_once_each_and_a_bad_address_names_the_field(tmp_path: Path) -> None:
    one = Worker(tmp_path / "a", masters="127.0.0.1:7101, tcp://127.0.0.1:7102,,tcp://127.0.0.1:7101")
    assert one.core.following.follower.masters.addresses == [M1, M2] and one.address == M1
    for bad in ("tcp://127.0.0.1:7101,tcp://nohost", " , ", "tcp://h:99999"):
        with pytest.raises(InvalidInput) as error:
            Worker(tmp_path / "b", masters=bad)
        assert error.value.field == "master" and str(error.value).startswith("master: ")


def test_the_cli_refuses_a_bad_list_in_one_line_naming_master(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--master", f"{M1},tcp://{'x' * 3}",
                           "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == ["error: master: 'tcp://xxx' is not an address (expected tcp://HOST:PORT)"]


# ---- a standby's answer -------------------------------------------------------------------------------------


def test_a_standby_naming_the_leader_sends_the_worker_there_and_renews_no_lease(worker: Worker) -> None:
    worker.tick()
    assert [address for address, _ in worker.link.take(Kind.HELLO)] == [M1], "the list is tried in order"
    worker.advance(3.0)
    worker.refuse(M3)
    assert worker.link.connections == [M3] and worker.address == M3 and not worker.core.welcomed
    assert worker.core.lease.silent_for(worker.mono) == pytest.approx(3.0), "a standby gives no lease"
    worker.tick()
    assert [address for address, _ in worker.link.take(Kind.HELLO)] == [M3], "HELLO at once to the leader"
    worker.welcome()
    assert worker.core.welcomed and worker.core.lease.silent_for(worker.mono) == 0.0


def test_a_leader_that_becomes_a_standby_is_left_for_the_leader_it_names(worker: Worker) -> None:
    worker.welcome()
    worker.null_job("j1")
    worker.link.take(Kind.RESULT)
    worker.refuse(M2)  # its lease ran out while it was paused: it answers the next heartbeat as a standby
    assert worker.address == M2 and not worker.core.welcomed
    worker.tick()
    [(address, hello)] = worker.link.take(Kind.HELLO)
    assert address == M2 and hello["running"] == [{"job": "j1", "attempt": 1}]
    worker.welcome()
    assert [(address, body["job"]) for address, body in worker.link.take(Kind.RESULT)] == [(M2, "j1")]


def test_no_leader_means_a_short_wait_then_the_next_address_with_a_growing_backoff(worker: Worker) -> None:
    worker.tick()
    worker.link.take(Kind.HELLO)
    worker.refuse(None)  # an election is under way
    worker.refuse(None)  # refusals of later frames do not stretch the wait
    assert worker.address == M1 and worker.link.connections == []
    assert worker.core.poll_timeout(worker.mono) <= NO_LEADER_BACKOFF
    worker.run(NO_LEADER_BACKOFF - STEP)
    assert worker.link.take(Kind.HELLO) == [] and worker.link.connections == [], "nothing sent while waiting"
    worker.run(STEP)
    assert worker.link.connections == [M2] and [a for a, _ in worker.link.take(Kind.HELLO)] == [M2]
    worker.refuse(None)
    assert worker.run(5.0, until=lambda: worker.address != M2) == pytest.approx(2 * NO_LEADER_BACKOFF)
    assert worker.address == M3
    worker.welcome()
    assert worker.core.following.follower.backoff == NO_LEADER_BACKOFF, "the next election starts short again"


def test_a_leader_outside_the_list_is_followed_only_from_a_single_seed_address(tmp_path: Path) -> None:
    elsewhere = "tcp://10.0.0.9:8080"
    listed = Worker(tmp_path / "a")
    listed.refuse(elsewhere)
    assert listed.address == M1 and listed.link.connections == [], "the operator's list is the trusted set"
    assert listed.core.following.follower.waiting(listed.mono)
    seeded = Worker(tmp_path / "b", masters=M1)
    seeded.refuse(elsewhere)
    assert seeded.address == elsewhere and seeded.link.connections == [elsewhere]
    assert seeded.core.following.follower.masters.learned == [elsewhere]


def test_a_single_master_that_has_no_leader_yet_gets_hello_again_after_the_wait(tmp_path: Path) -> None:
    seeded = Worker(tmp_path / "work", masters=M1)
    seeded.tick()
    seeded.link.take(Kind.HELLO)
    seeded.refuse(None)
    seeded.run(NO_LEADER_BACKOFF + STEP)
    assert [a for a, _ in seeded.link.take(Kind.HELLO)] == [M1] and seeded.link.connections == []


# ---- losing the master ----------------------------------------------------------------------------------


def test_a_lost_leader_is_left_at_once_and_its_unacknowledged_results_go_to_the_new_one(worker: Worker) -> None:
    worker.welcome()
    worker.null_job("j1")
    [(address, result)] = worker.link.take(Kind.RESULT)
    assert address == M1 and result["status"] == "completed"
    worker.hear(Kind.HEARTBEAT, {})  # the last word of M1
    worker.link.down.add(M1)  # kill -9: its port refuses connections
    assert worker.core.poll_timeout(worker.mono) <= 1.0 + 0.25 + 1e-9, "the loop wakes up for the probe"
    took = worker.run(10.0, until=lambda: worker.address != M1)
    assert worker.address == M2 and took <= 1.0 + 0.25 + STEP + 1e-9, f"moved on after {took:.2f}s"
    worker.tick()
    [(address, hello)] = worker.link.take(Kind.HELLO)
    assert address == M2 and hello["running"] == [{"job": "j1", "attempt": 1}], "the result is on its way"
    worker.welcome()
    assert [(a, body["job"]) for a, body in worker.link.take(Kind.RESULT)] == [(M2, "j1")], "resent to M2"
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    assert worker.core.results.unacked == {}


def test_a_master_found_down_in_an_earlier_failover_does_not_count_as_down_in_the_next(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "work", masters=f"{M1},{M2}")
    worker.welcome()
    worker.link.down.add(M1)
    worker.run(5.0, until=lambda: worker.address == M2)
    worker.welcome()
    worker.link.down = {M2}  # M1 came back (a standby now) and M2, the leader, is killed a moment later
    worker.hear(Kind.HEARTBEAT, {})
    silent_from = worker.mono
    worker.run(5.0, until=lambda: worker.address == M1)
    assert worker.address == M1
    assert worker.core.lease.silent_for(worker.mono) == pytest.approx(worker.mono - silent_from), \
        "M1 runs: the lease is not renewed as if no master ran"


def test_a_master_that_accepts_but_never_answers_is_left_after_a_few_heartbeats(worker: Worker) -> None:
    worker.welcome()
    took = worker.run(10.0, until=lambda: worker.address != M1)  # frozen: its port accepts, nothing answers
    assert worker.address == M2 and 3.0 < took <= 3.0 + 0.5 + STEP, took
    took = worker.run(10.0, until=lambda: worker.address != M2)  # joining: HELLO never answered either
    assert worker.address == M3 and JOIN_PATIENCE < took <= JOIN_PATIENCE + 0.5 + STEP, took


def test_the_leader_just_lost_is_not_followed_back_while_a_standby_still_names_it(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "work", masters=f"{M1},{M2}")
    worker.welcome()
    worker.link.down.add(M1)
    worker.run(5.0, until=lambda: worker.address == M2)
    worker.refuse(M1)  # the standby has not seen M1's lease run out yet
    assert worker.address == M2 and worker.core.following.follower.waiting(worker.mono)
    worker.run(NO_LEADER_BACKOFF + STEP)
    assert worker.address == M2, "the list's next address skips the one that refused a moment ago"
    assert [a for a, _ in worker.link.take(Kind.HELLO)][-1] == M2
    worker.advance(DOWN_MEMORY)
    worker.refuse(M1)  # much later: M1 may have come back and won the lease
    assert worker.address == M1


def test_a_lease_that_runs_out_reconnects_to_the_next_master_not_the_same(worker: Worker) -> None:
    worker.welcome(node_timeout=0.5)  # shorter than the silence that gets a master probed
    took = worker.run(5.0, until=lambda: bool(worker.link.connections))
    assert worker.link.connections == [M2] and took == pytest.approx(0.5 + STEP)


# ---- running attempts through a failover (a real ffmpeg that runs until stopped) ----------------------------


@pytest.fixture
def silent_input() -> Iterator[socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(20)
        yield listener


@pytest.fixture
def ffmpeg_worker(tmp_path: Path, ffmpeg: str) -> Iterator[Worker]:
    capabilities = Capabilities(engines=["ffmpeg"], ffmpeg=ffmpeg, gstreamer=None,
                                encoders=[Encoder("libx264", "h264", False, available=True, validated=True)])
    one = Worker(tmp_path / "work", capabilities=capabilities, allow_private_network=True)
    yield one
    end_attempts(list(one.core.attempts.values()), 5.0, time.monotonic)


def start_stalled_job(worker: Worker, listener: socket.socket) -> tuple[Attempt, socket.socket]:
    """A real ffmpeg job, running: its process is connected to the silent input."""
    host, port = listener.getsockname()
    params = validate_submission({"scenario": "stalled", "input": f"tcp://{host}:{port}", "resolution": "160x120",
                                  "duration": 60, "codec": "h264"}).params
    spec: dict[str, Any] = {"scenario": "stalled", "engine": "ffmpeg", "queue": "default", "priority": "medium",
                            "params": params, "labels": {}, "timeout": None, "tenant": "acme"}
    worker.hear(Kind.JOB, {"job": "j1", "attempt": 1, "spec": spec})
    connection, _ = listener.accept()
    attempt = worker.core.attempts["j1"]
    eventually(lambda: attempt.pid is not None, message="the engine's pid")
    worker.tick()
    return attempt, connection


def test_running_attempts_are_kept_through_a_failover_and_offered_in_the_new_leaders_hello(
        ffmpeg_worker: Worker, silent_input: socket.socket) -> None:
    worker = ffmpeg_worker
    worker.welcome(node_timeout=10.0)
    attempt, connection = start_stalled_job(worker, silent_input)
    with connection:
        worker.link.down.add(M1)
        worker.run(5.0, until=lambda: worker.address == M2)
        worker.refuse(None)  # M2 stands by: the election is not over
        worker.run(1.0, until=lambda: worker.address == M3)
        worker.refuse(M2)  # M3: the lease is M2's now
        assert worker.address == M2
        worker.link.take(Kind.HELLO)
        worker.tick()
        [(address, hello)] = worker.link.take(Kind.HELLO)
        assert address == M2 and hello["running"] == [{"job": "j1", "attempt": 1}], "for M2 to adopt"
        worker.welcome(node_timeout=10.0)
        worker.run(1.0)
        assert not attempt.cancel.is_set() and "j1" in worker.core.attempts
        beats = [body for address, body in worker.link.take(Kind.HEARTBEAT) if address == M2]
        assert beats and {"job": "j1", "attempt": 1}.items() <= beats[-1]["jobs"][0].items()


def test_a_search_past_the_node_timeout_stops_the_attempts_but_a_cluster_all_down_keeps_them(
        ffmpeg_worker: Worker, silent_input: socket.socket) -> None:
    worker = ffmpeg_worker
    worker.welcome(node_timeout=4.0)
    attempt, connection = start_stalled_job(worker, silent_input)
    with connection:
        worker.link.down |= {M1, M2, M3}  # every master restarts: none can give the attempt away
        worker.run(12.0)
        assert not attempt.cancel.is_set(), "kept while no listed master runs"
        worker.link.down.clear()  # they are back, standing by, and no one leads: the silence now counts
        waited = 0.0
        while not attempt.cancel.is_set() and waited < 10.0:
            waited += worker.run(0.5)
            worker.refuse(None)
        assert attempt.cancel.is_set() and attempt.cancel_reason.startswith("worker lost its master")
        assert 3.0 <= waited <= 5.0, f"the lease ran its node timeout from the last refused probe ({waited:.2f}s)"
