"""LogShipper: log lines leave in bounded batches, survive a dead socket in a bounded spool, gaps are marked."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ffrtmp.protocol import Kind, decode
from ffrtmp.worker.logship import MAX_LINE, LogShipper


class FakeSocket:
    """A `send` callable: decodes and keeps every frame it accepts; `up=False` refuses them all."""

    def __init__(self) -> None:
        self.up = True
        self.frames: list[dict[str, Any]] = []
        self.refused = 0
        self.budget: int | None = None
        """How many more frames it takes before refusing (None: no limit)."""

    def __call__(self, frame: bytes) -> bool:
        if not self.up or self.budget == 0:
            self.refused += 1
            return False
        if self.budget is not None:
            self.budget -= 1
        message = decode(frame)
        assert message.kind is Kind.LOG
        self.frames.append(message.body)
        return True

    def texts(self) -> list[str]:
        return [line[3] for body in self.frames for line in body["lines"]]

    def batch_sizes(self) -> list[int]:
        return [len(body["lines"]) for body in self.frames]


def line(seq: int, text: str | None = None) -> tuple[int, float, str, str]:
    return (seq, 1_700_000_000.0 + seq, "stderr", text if text is not None else f"line {seq}")


@pytest.fixture
def sock() -> FakeSocket:
    return FakeSocket()


def test_a_full_batch_leaves_at_once(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=3, max_age=10.0)
    for seq in range(1, 4):
        ship.add("job", 1, line(seq), now=0.0)
    assert sock.batch_sizes() == [3]
    body = sock.frames[0]
    assert (body["job"], body["attempt"]) == ("job", 1)
    assert body["lines"] == [list(line(seq)) for seq in range(1, 4)]
    assert ship.unsent() == 0


def test_batches_never_exceed_max_lines(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=4, max_age=10.0)
    for seq in range(1, 11):
        ship.add("job", 1, line(seq), now=0.0)
    ship.flush_job("job", 1)
    assert sock.batch_sizes() == [4, 4, 2]
    assert sock.texts() == [f"line {seq}" for seq in range(1, 11)]


def test_a_partial_batch_waits_for_max_age(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=0.25)
    ship.add("job", 1, line(1), now=10.0)
    ship.add("job", 1, line(2), now=10.2)
    ship.flush(10.2)
    assert sock.frames == []
    ship.flush(10.249)
    assert sock.frames == []
    ship.flush(10.25)  # the oldest line is max_age old
    assert sock.batch_sizes() == [2]
    assert ship.unsent() == 0


def test_age_counts_from_the_oldest_line_of_each_job(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=1.0)
    ship.add("a", 1, line(1), now=0.0)
    ship.add("b", 1, line(1), now=0.5)
    ship.flush(1.0)
    assert [body["job"] for body in sock.frames] == ["a"]
    ship.flush(1.5)
    assert [body["job"] for body in sock.frames] == ["a", "b"]


def test_jobs_and_attempts_are_batched_apart(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=1.0)
    ship.add("a", 1, line(1, "a1"), now=0.0)
    ship.add("a", 2, line(1, "a2"), now=0.0)
    ship.add("b", 1, line(1, "b1"), now=0.0)
    ship.flush(5.0)
    assert sorted((body["job"], body["attempt"], body["lines"][0][3]) for body in sock.frames) == [
        ("a", 1, "a1"), ("a", 2, "a2"), ("b", 1, "b1")]


def test_flush_job_sends_at_once(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=60.0)
    ship.add("job", 1, line(1), now=0.0)
    ship.add("other", 1, line(1), now=0.0)
    ship.flush_job("job", 1)
    assert [body["job"] for body in sock.frames] == ["job"]
    assert ship.unsent() == 1


def test_flush_job_for_an_unknown_job_sends_nothing(sock: FakeSocket) -> None:
    ship = LogShipper(sock)
    ship.flush_job("nobody", 3)
    assert sock.frames == []


def test_lines_stay_spooled_while_send_fails_and_leave_in_order(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=3, max_age=0.25)
    sock.up = False
    for seq in range(1, 8):
        ship.add("job", 1, line(seq), now=float(seq))
    ship.flush(100.0)
    assert sock.frames == []
    assert sock.refused > 0
    assert ship.pending() == 7
    sock.up = True
    ship.flush(101.0)
    assert sock.texts() == [f"line {seq}" for seq in range(1, 8)]
    assert sock.batch_sizes() == [3, 3, 1]
    assert ship.unsent() == 0
    assert ship.due_in(200.0) == math.inf


def test_a_send_failing_midway_keeps_the_rest(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=2, max_age=0.25)
    sock.up = False
    for seq in range(1, 6):
        ship.add("job", 1, line(seq), now=0.0)
    sock.budget = 1  # the socket takes one frame, then refuses again
    sock.up = True
    ship.flush_job("job", 1)
    assert sock.texts() == ["line 1", "line 2"]
    assert ship.unsent() == 3
    sock.budget = None
    ship.flush(1.0)
    assert sock.texts() == [f"line {seq}" for seq in range(1, 6)]
    assert sock.batch_sizes() == [2, 2, 1]


def test_spooled_lines_go_out_with_new_ones_in_order(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=0.25)
    sock.up = False
    ship.add("job", 1, line(1), now=0.0)
    ship.add("job", 1, line(2), now=0.1)
    ship.flush_job("job", 1)
    sock.up = True
    ship.add("job", 1, line(3), now=0.2)
    ship.flush_job("job", 1)
    assert sock.texts() == ["line 1", "line 2", "line 3"]


def test_overflow_drops_the_oldest_and_marks_the_gap(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=3, max_age=0.25, spool_limit=5)
    sock.up = False
    for seq in range(1, 9):  # 8 lines into a spool of 5: 4 lines and the marker
        ship.add("job", 1, line(seq), now=0.0)
    assert ship.pending() == 5
    sock.up = True
    ship.flush_job("job", 1)
    texts = sock.texts()
    assert texts[1:] == ["line 5", "line 6", "line 7", "line 8"]  # the newest survive, in order
    assert texts[0] == f"[ffrtmp: {ship.dropped} log lines dropped, spool full]"
    marker = sock.frames[0]["lines"][0]
    assert marker[2] == "worker"
    assert marker[0] == 4  # numbered just before the first line kept


def test_overflow_counts_every_dropped_line(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=10, max_age=0.25, spool_limit=3)
    sock.up = False
    for seq in range(1, 7):
        ship.add("job", 1, line(seq), now=0.0)
    sock.up = True
    ship.flush_job("job", 1)
    texts = sock.texts()
    kept = [text for text in texts if text.startswith("line ")]
    assert kept == ["line 5", "line 6"]
    lost = 6 - len(kept)  # lines 1-4
    assert ship.dropped == lost
    assert texts[0] == f"[ffrtmp: {lost} log lines dropped, spool full]"


def marker_of(sock: FakeSocket, job: str) -> str:
    texts = [line[3] for body in sock.frames if body["job"] == job for line in body["lines"]]
    return texts[0]


def test_a_marker_counts_only_its_own_jobs_gap() -> None:
    def overflow(ship: LogShipper, sock: FakeSocket, job: str, lines: int) -> None:
        sock.up = False
        for seq in range(1, lines + 1):
            ship.add(job, 1, line(seq), now=0.0)
        sock.up = True
        ship.flush_job(job, 1)

    alone_sock, shared_sock = FakeSocket(), FakeSocket()
    alone, shared = (LogShipper(s, max_lines=10, max_age=0.25, spool_limit=3) for s in (alone_sock, shared_sock))
    overflow(alone, alone_sock, "b", 5)
    overflow(shared, shared_sock, "a", 50)  # another job's earlier outage
    overflow(shared, shared_sock, "b", 5)
    assert marker_of(shared_sock, "b") == marker_of(alone_sock, "b")


def test_the_spool_stays_bounded_under_a_long_outage(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=50, max_age=0.25, spool_limit=100)
    sock.up = False
    for seq in range(1, 1001):
        ship.add("job", 1, line(seq), now=0.0)
        assert ship.pending() <= 100
    sock.up = True
    ship.flush(1.0)
    texts = sock.texts()
    assert len(texts) == 100
    assert texts[-1] == "line 1000"
    assert texts[0].startswith("[ffrtmp: ")
    assert sum(1 for text in texts if text.startswith("[ffrtmp: ")) == 1  # one marker, not one per overflow


def test_long_lines_are_cut(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=1, max_age=0.25)
    ship.add("job", 1, line(1, "x" * (MAX_LINE + 500)), now=0.0)
    assert sock.texts() == ["x" * MAX_LINE]


def test_due_in(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=0.25)
    assert ship.due_in(0.0) == math.inf
    ship.add("a", 1, line(1), now=10.0)
    assert ship.due_in(10.0) == pytest.approx(0.25)
    assert ship.due_in(10.1) == pytest.approx(0.15)
    ship.add("b", 1, line(1), now=10.2)
    assert ship.due_in(10.2) == pytest.approx(0.05)  # the oldest batch decides
    assert ship.due_in(99.0) == 0.0  # overdue is never negative
    ship.flush(10.25)
    assert ship.due_in(10.25) == pytest.approx(0.2)
    ship.flush(10.45)
    assert ship.due_in(10.45) == math.inf


def test_due_in_stays_due_while_the_socket_is_down(sock: FakeSocket) -> None:
    ship = LogShipper(sock, max_lines=100, max_age=0.25)
    sock.up = False
    ship.add("job", 1, line(1), now=0.0)
    ship.flush(1.0)
    assert ship.due_in(1.0) == 0.0  # still waiting, so the loop keeps retrying
