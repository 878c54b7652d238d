"""A peer with only the master's public key (no API key) costs the master bounded work (H4)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import zmq

from ffrtmp.client import Client
from ffrtmp.local import LocalCluster, wait_for
from ffrtmp.master.inbound import AUTH_FAILURE_COST, PREAUTH_SHARE, PREAUTH_TURN_BYTES, InboundGate
from ffrtmp.protocol import Kind, encode
from ffrtmp.transport import DealerSocket, RouterSocket
from tests.test_coordinator import Cluster

M0 = 100.0


def test_a_peer_over_its_budget_is_dropped_while_another_peer_is_not() -> None:
    gate = InboundGate(rate=10.0, burst=20.0)
    admitted = [gate.admit("flooder", 100, M0) for _ in range(50)]
    assert admitted.count(True) == 20 and gate.dropped == 30
    assert gate.admit("calm", 100, M0)
    assert gate.admit("flooder", 100, M0 + 0.5), "the bucket refills with time"


def test_big_frames_cost_more_than_small_ones() -> None:
    gate = InboundGate(rate=10.0, burst=100.0)
    assert gate.admit("p", 40 * 4096, M0)  # 41 tokens
    assert gate.admit("p", 40 * 4096, M0)
    assert not gate.admit("p", 40 * 4096, M0)
    assert gate.admit("p", 10, M0)


def test_failed_api_keys_drain_the_peers_budget_never_below_zero() -> None:
    gate = InboundGate(rate=10.0, burst=2 * AUTH_FAILURE_COST)
    gate.auth_failed("guesser", M0)
    gate.auth_failed("guesser", M0)
    gate.auth_failed("guesser", M0)
    bucket = gate.limiter.buckets[("guesser", "inbound")]
    assert bucket.tokens == 0
    assert not gate.admit("guesser", 10, M0)
    assert gate.admit("guesser", 10, M0 + 0.2)


def test_one_turn_reads_a_bounded_share_from_untrusted_peers() -> None:
    gate = InboundGate(rate=1e9)
    for _ in range(PREAUTH_SHARE):
        assert not gate.turn_over
        gate.admit("p", 10, M0)
    assert gate.turn_over
    gate.new_turn()
    assert not gate.turn_over
    assert gate.admit("p", PREAUTH_TURN_BYTES + 1, M0), "a big frame passes first in its turn"
    assert gate.turn_over, "and ends it"


def test_a_batch_of_requests_from_a_client_is_refused_unread(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    items = [(Kind.REQUEST, {"rid": str(i), "op": "stats", "args": {}}) for i in range(1000)]
    from ffrtmp.protocol import encode_batch

    cluster.coordinator.handle_batch([(b"flooder", encode_batch(items))], cluster.now)
    assert cluster.net.take(b"flooder") == []
    assert cluster.coordinator.counters.refused_batches == 1
    assert cluster.coordinator.counters.messages.get("request", 0) == 0
    from prometheus_client import generate_latest

    from ffrtmp.master.metrics import MasterMetrics

    text = generate_latest(MasterMetrics(cluster.coordinator, cluster.store.reader()).registry).decode()
    assert "ffrtmp_preauth_dropped_frames_total 1.0" in text


def test_a_joined_worker_is_admitted_whatever_its_rate(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, preauth_rate=1.0)
    cluster.hello(b"w1", "alpha")
    assert all(cluster.coordinator.admit(b"w1", None, 10_000, M0) for _ in range(100))
    assert not all(cluster.coordinator.admit(b"stranger", None, 10, M0) for _ in range(100))


def test_requests_with_a_wrong_key_use_up_the_peers_budget(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, api_key="secret", preauth_rate=100.0)
    for _ in range(4):
        assert cluster.request("stats", key="wrong", route=b"guesser")["status"] == 401
    assert not cluster.coordinator.admit(b"guesser", None, 10, cluster.now), "4 failures cost 200 tokens"
    assert cluster.coordinator.admit(b"calm", None, 10, cluster.now)


def test_the_router_drops_refused_frames_and_ends_a_turn_early() -> None:
    router = RouterSocket("tcp://127.0.0.1:*", None)
    dealer = DealerSocket(router.endpoint, None, None)
    try:
        for i in range(10):
            assert dealer.send(encode(Kind.REQUEST, {"rid": str(i), "op": "stats", "args": {}}))
        seen: list[int] = []

        def admit(route: bytes, sender: str | None, nbytes: int) -> bool:
            seen.append(nbytes)
            return len(seen) % 2 == 0

        batch: list[tuple[bytes, bytes, str | None]] = []
        deadline = time.monotonic() + 10
        while len(seen) < 10 and time.monotonic() < deadline:
            router.poll(0.1)
            batch += router.recv_batch(100, admit, lambda: len(seen) >= 6)
            if len(seen) >= 6:
                break
        assert len(seen) == 6, "the turn ended when its share was used"
        assert len(batch) == 3, "refused frames are not returned"
        assert [frame for _, frame, _ in batch][0].startswith(b'{"v":1,"k":"request"')
    finally:
        dealer.close()
        router.close()


# ---- a real master under a pre-auth flood -------------------------------------------------------------


def flood(url: str, master_key: str, seconds: float) -> None:
    from ffrtmp.client import resolve_master_key
    from ffrtmp.security import KeyPair

    socket = DealerSocket(url, resolve_master_key(master_key), KeyPair(*zmq.curve_keypair()))
    batch = encode(Kind.BATCH, {"items": [{"k": "request", "b": {"rid": str(i), "op": "list", "args": {}}}
                                          for i in range(1000)]})
    single = encode(Kind.REQUEST, {"rid": "1", "op": "list", "args": {}})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        socket.send(batch)
        socket.send(single)
        while socket.recv_nowait() is not None:
            pass
    socket.close()


@pytest.mark.slow
def test_a_flood_without_an_api_key_leaves_the_master_answering_and_its_worker_online(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, master_args=["--node-timeout", "6"]) as cluster:
        cluster.start_master()
        admin_key = cluster.api_key("admin", "ops")
        cluster.start_worker("w1", "--engines", "null", "--api-key", cluster.api_key("worker", "ops"))
        master_key = str(cluster.master_dir / "master.key")
        client_key = str(cluster.root / "config" / "client.key_secret")
        with Client(cluster.url, master_key=master_key, client_key=client_key, api_key=admin_key,
                    timeout=5) as calm:
            wait_for(lambda: [n for n in calm.nodes() if n["status"] == "online"], 30, "w1 to join")
            flooder = multiprocessing.Process(target=flood, args=(cluster.url, master_key, 8.0))
            flooder.start()
            try:
                time.sleep(1.0)
                end = time.monotonic() + 6.0  # past the node timeout: a starved worker would be declared dead
                answered = 0
                while time.monotonic() < end:
                    job_id = calm.submit("calm", engine="null")  # raises after 5 s without an answer
                    assert calm.wait(job_id, timeout=5)["status"] == "completed"
                    answered += 1
                assert answered >= 3
            finally:
                flooder.join(15)
            assert [n["status"] for n in calm.nodes()] == ["online"]
        assert " silent for " not in (cluster.logs / "master.log").read_text()
