"""The master's read path under a pre-auth flood: what is dropped unread, what is barred, when reading pauses."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import zmq

from ffrtmp.master.inbound import (
    AUTH_FAILURE_BAR,
    AUTH_FAILURE_COST,
    BATCH_HEAD,
    DROP_BYTES_PER_FRAME,
    DROP_PAUSE,
    DROP_SHARE,
    InboundGate,
)
from ffrtmp.protocol import Kind, encode, encode_batch
from ffrtmp.security import KeyPair, load_public_key
from ffrtmp.transport import DealerSocket, RouterSocket
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster

M0 = 100.0
REQUEST = encode(Kind.REQUEST, {"rid": "1", "op": "stats", "args": {}})
BATCH = encode_batch([(Kind.REQUEST, {"rid": str(i), "op": "list", "args": {}}) for i in range(1000)])


def test_the_batch_head_is_what_the_encoder_writes() -> None:
    assert BATCH_HEAD == b'{"v":1,"k":"batch"'
    assert BATCH.startswith(BATCH_HEAD) and not REQUEST.startswith(BATCH_HEAD)


def test_a_batch_from_a_stranger_is_dropped_without_touching_its_budget() -> None:
    gate = InboundGate(rate=10.0, burst=20.0)
    assert not gate.admit_frame("stranger", memoryview(BATCH), M0)
    assert gate.dropped == 1
    assert ("stranger", "inbound") not in gate.limiter.buckets, "never charged: it was not going to be decoded"
    assert gate.admit_frame("stranger", memoryview(REQUEST), M0)


def test_a_failed_api_key_bars_its_peer_for_a_moment_only() -> None:
    gate = InboundGate(rate=1000.0, burst=AUTH_FAILURE_COST)
    gate.auth_failed("guesser", M0)
    assert not gate.admit("guesser", 10, M0 + AUTH_FAILURE_BAR - 0.001), "no refill while barred"
    assert gate.admit("calm", 10, M0 + 0.002)
    assert gate.admit("guesser", 10, M0 + AUTH_FAILURE_BAR + 0.002)


def test_a_peer_that_keeps_failing_gets_few_frames_a_second_through() -> None:
    gate = InboundGate(rate=1000.0, burst=AUTH_FAILURE_COST)
    admitted = 0
    for step in range(10_000):  # one second of a frame every 0.1 ms, each failing its key
        mono = M0 + step * 1e-4
        if gate.admit("guesser", 60, mono):
            admitted += 1
            gate.auth_failed("guesser", mono)
    assert admitted <= 1 / AUTH_FAILURE_BAR + 1


def test_a_turn_that_dropped_its_share_ends_and_pauses_reading() -> None:
    gate = InboundGate(rate=1.0, burst=1.0)
    assert gate.admit("flooder", 10, M0)
    for _ in range(DROP_SHARE):
        assert not gate.turn_over
        assert not gate.admit("flooder", 10, M0)
    assert gate.turn_over and gate.pause == DROP_PAUSE
    gate.new_turn()
    assert not gate.turn_over and gate.pause == 0.0


def test_big_dropped_frames_end_a_turn_sooner() -> None:
    gate = InboundGate(rate=1e9)
    for _ in range(DROP_SHARE // (1 + len(BATCH) // DROP_BYTES_PER_FRAME) + 1):
        assert not gate.turn_over
        assert not gate.admit_frame("flooder", memoryview(BATCH), M0)
    assert gate.turn_over and gate.pause == DROP_PAUSE
    assert gate.dropped <= 3, "a turn drops two or three BATCHes of 1,000 requests, not 100"


def test_a_turn_of_admitted_frames_never_pauses() -> None:
    gate = InboundGate(rate=1e9)
    for _ in range(3 * DROP_SHARE):
        gate.admit("busy", 10, M0)
    assert gate.pause == 0.0


def test_the_router_hands_admit_a_view_of_each_frame_and_its_curve_key() -> None:
    public, secret = zmq.curve_keypair()
    router = RouterSocket("tcp://127.0.0.1:*", KeyPair(public, secret))
    stranger = KeyPair(*zmq.curve_keypair())
    dealer = DealerSocket(router.endpoint, public, stranger)
    gate = InboundGate(rate=1e6)
    try:
        for _ in range(3):
            assert dealer.send(BATCH) and dealer.send(REQUEST)
        seen: list[tuple[str | None, int]] = []

        def admit(route: bytes, sender: str | None, frame: memoryview) -> bool:
            seen.append((sender, len(frame)))
            return gate.admit_frame(sender or route.hex(), frame, M0)

        batch: list[tuple[bytes, bytes, str | None]] = []

        def read() -> bool:
            router.poll(0.05)
            batch.extend(router.recv_batch(100, admit))
            return len(seen) >= 6

        eventually(read, message="6 frames read")
        assert [frame for _, frame, _ in batch] == [REQUEST] * 3, "the batches were dropped, the requests kept"
        assert gate.dropped == 3
        assert {sender for sender, _ in seen} == {stranger.public.decode()}
        assert sorted({size for _, size in seen}) == [len(REQUEST), len(BATCH)]
    finally:
        dealer.close()
        router.close()


ANSWERS = [0]


def answered(socket: DealerSocket) -> int:
    while socket.recv_nowait() is not None:
        ANSWERS[0] += 1
    return ANSWERS[0]


def test_a_master_drops_a_strangers_batches_unread_and_answers_a_wrong_key_a_few_times(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path, api_key="secret", preauth_rate=100.0) as cluster:
        eventually(lambda: gc.get_freeze_count() > 0, message="the master to freeze what start-up made")
        coordinator = cluster.server.coordinator
        master_key = load_public_key(Path(cluster.master_key))
        stranger = DealerSocket(cluster.url, master_key, KeyPair(*zmq.curve_keypair()))
        wrong = encode(Kind.REQUEST, {"rid": "1", "op": "stats", "args": {}, "key": "wrong"})
        try:
            for _ in range(20):
                assert stranger.send(BATCH)
            eventually(lambda: coordinator.inbound.dropped >= 20, message="20 batches dropped")
            assert coordinator.counters.refused_batches == 0, "none was decoded"
            assert coordinator.counters.messages.get("request", 0) == 0
            for _ in range(4):  # 4 failures at 50 tokens each empty a bucket of 200
                assert stranger.send(wrong)
                assert stranger.recv(5.0) is not None, "a wrong key is answered (401)"
            began = time.monotonic()
            before = coordinator.inbound.dropped
            for _ in range(50):  # at once: they land while the peer is barred
                assert stranger.send(wrong)
            eventually(lambda: coordinator.inbound.dropped + answered(stranger) >= before + 50,
                       message="all 50 read")
            # Past the bar, its bucket refills 100 frames a second: a slow machine lets that many more in.
            slack = max(0.0, time.monotonic() - began - AUTH_FAILURE_BAR) * 100
            assert ANSWERS[0] <= slack, "the 50 fell in the bar of the 4th failure"
            with cluster.client(api_key="secret") as calm:
                assert calm.stats()["jobs"] is not None
        finally:
            stranger.close()
    assert gc.get_freeze_count() == 0, "a master run in a thread leaves its process as it found it"


def test_the_router_drops_a_message_of_another_shape_and_reads_on() -> None:
    router = RouterSocket("tcp://127.0.0.1:*", None)
    dealer = DealerSocket(router.endpoint, None, None)
    try:
        dealer.socket.send_multipart([b"one", b"two"])  # with the route: 3 parts, not (route, frame)
        assert dealer.send(REQUEST)
        batch: list[tuple[bytes, bytes, str | None]] = []

        def read() -> bool:
            router.poll(0.05)
            batch.extend(router.recv_batch(100))
            return bool(batch)

        eventually(read, message="the request read")
        assert [frame for _, frame, _ in batch] == [REQUEST]
    finally:
        dealer.close()
        router.close()
