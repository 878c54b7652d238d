"""The outbox and the dispatch schedule on their own: a plain queue, and when a pass is owed."""

from __future__ import annotations

from ffrtmp.master.clock import Clock, DispatchDue
from ffrtmp.master.outbox import Outbox
from ffrtmp.protocol import MAX_BATCH_ITEMS, Kind, decode, unbatch


def outbox() -> Outbox:
    return Outbox(probe=lambda route: True)


def test_acknowledgements_to_one_worker_leave_as_one_frame_after_the_rest() -> None:
    box = outbox()
    box.ack(b"w1", "a", 1)
    box.send(b"c", Kind.REPLY, {"rid": "1", "status": 200})
    box.ack(b"w1", "b", 2, publish=True)
    box.ack(b"w2", "c", 1)
    frames = box.take()
    assert [(route, decode(frame).kind) for route, frame, _ in frames] == [
        (b"c", Kind.REPLY), (b"w1", Kind.BATCH), (b"w2", Kind.ACK)]
    assert [m.body for m in unbatch(decode(frames[1][1]))] == [
        {"job": "a", "attempt": 1}, {"job": "b", "attempt": 2, "publish": True}]
    assert box.take() == [] and box.acks == {}


def test_more_acknowledgements_than_one_batch_holds_leave_in_several_a_worker_accepts() -> None:
    box = outbox()
    for n in range(MAX_BATCH_ITEMS + 5):
        box.ack(b"w1", f"job-{n}", 1)
    frames = box.take()
    batches = [unbatch(decode(frame)) for _, frame, _ in frames]  # unbatch refuses more than MAX_BATCH_ITEMS
    assert [len(items) for items in batches] == [MAX_BATCH_ITEMS, 5]
    assert [m.body["job"] for items in batches for m in items] == [f"job-{n}" for n in range(MAX_BATCH_ITEMS + 5)]


def test_undo_drops_only_what_one_handler_queued() -> None:
    box = outbox()
    box.refuse(b"x", 401, "no")
    box.ack(b"w1", "a", 1)
    mark = box.mark(b"w1")
    box.cancel(b"w1", "b", "not-a-number")  # as the worker named it
    box.ack(b"w1", "b", 1)
    box.undo(mark)
    frames = box.take()
    assert [decode(frame).kind for _, frame, _ in frames] == [Kind.REFUSED, Kind.ACK]


def test_a_frame_keeps_its_recovery_and_clear_drops_everything() -> None:
    box = outbox()
    lost: list[str] = []
    box.queue(b"w1", b"frame", lambda: lost.append("w1"))
    (_, _, on_fail), = box.frames
    assert on_fail is not None
    on_fail()
    assert lost == ["w1"]
    box.ack(b"w1", "a", 1)
    box.clear()
    assert box.take() == []


def test_the_earliest_owed_pass_wins_and_is_taken_once() -> None:
    due = DispatchDue()
    due.at(20.0)
    due.at(10.0)
    due.at(15.0)
    assert due.retry_at == 10.0
    assert not due.reached(9.9) and not due.dirty
    assert due.reached(10.0) and due.dirty and due.retry_at is None
    assert not due.reached(30.0)


def test_steady_time_is_fixed_to_the_wall_clock_at_the_first_reading() -> None:
    clock = Clock()
    clock.set(1_000.0, 5.0)
    assert clock.steady == 1_000.0
    clock.set(500.0, 7.0)  # the wall clock stepped back: steady time does not
    assert (clock.wall, clock.mono, clock.steady) == (500.0, 7.0, 1_002.0)
    follows = Clock()
    follows.set(42.0, None)
    assert follows.mono == 42.0 and follows.steady == 42.0
