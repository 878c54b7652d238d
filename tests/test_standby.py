"""A standby's answers, cluster status, and the client side's list of masters: no sockets, a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ffrtmp.client import NotLeaderReply, reply_error
from ffrtmp.errors import InvalidInput, NotFound
from ffrtmp.master.auth import Authority, create_key
from ffrtmp.master.standby import StandbyDesk, cluster_status, is_cluster_request, not_leader_body
from ffrtmp.master.store import SqliteStore
from ffrtmp.master.store.leases import Lease
from ffrtmp.masters import MasterList, leader_named, parse_address, parse_masters, refuses_connections
from ffrtmp.protocol import NOT_LEADER, Kind, Message, decode, encode, encode_batch

T0 = 1_700_000_000.0
HELLO = {"name": "w1", "fingerprint": "fp", "version": "test", "slots": 1, "engines": ["null"]}


class Desk:
    def __init__(self, tmp_path: Path, legacy_key: str | None = None) -> None:
        self.now = T0
        self.store = SqliteStore(tmp_path / "master.db")
        self.store.lease_clock = lambda: self.now
        self.lease: Lease | None = None
        self.sent: list[tuple[bytes, Message]] = []
        authority = Authority(self.store, legacy_key)
        self.desk = StandbyDesk(self.store, lambda: authority, lambda: self.lease, self.send)

    def send(self, route: bytes, frame: bytes) -> bool:
        self.sent.append((route, decode(frame)))
        return True

    def request(self, op: str, key: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"rid": "7", "op": op, "args": {}}
        if key is not None:
            body["key"] = key
        self.desk.answer([(b"client", encode(Kind.REQUEST, body), None)])
        (route, reply), = self.sent
        self.sent.clear()
        assert route == b"client" and reply.kind is Kind.REPLY and reply.body["rid"] == "7"
        return reply.body


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


def test_a_client_request_is_told_where_the_leader_is(desk: Desk) -> None:
    desk.lease = Lease("m1", 4, "tcp://m1:8080", 2.0)
    reply = desk.request("submit")
    assert reply["status"] == NOT_LEADER
    assert reply["error"] == "not the leader; the leader is tcp://m1:8080, term 4"
    assert reply["body"] == {"leader": "tcp://m1:8080", "name": "m1", "term": 4}


def test_a_worker_hello_and_a_batch_of_results_get_one_refusal_each(desk: Desk) -> None:
    desk.lease = Lease("m1", 4, "tcp://m1:8080", 2.0)
    results = [(Kind.RESULT, {"job": f"j{i}", "attempt": 1, "status": "completed", "at": T0}) for i in range(3)]
    desk.desk.answer([(b"w1", encode(Kind.HELLO, HELLO), None), (b"w2", encode_batch(results), None)])
    assert [(route, m.kind, m.body["status"], m.body["leader"], m.body["term"]) for route, m in desk.sent] == [
        (b"w1", Kind.REFUSED, NOT_LEADER, "tcp://m1:8080", 4), (b"w2", Kind.REFUSED, NOT_LEADER, "tcp://m1:8080", 4)]


def test_while_nobody_leads_the_answer_says_an_election_is_under_way(desk: Desk) -> None:
    desk.lease = Lease("m1", 4, "tcp://m1:8080", -0.5)  # expired, not yet taken over
    reply = desk.request("list")
    assert reply["status"] == NOT_LEADER and "no master leads right now" in reply["error"]
    assert reply["body"] == {"leader": None, "name": None, "term": 4}


def test_a_malformed_frame_gets_no_answer(desk: Desk) -> None:
    desk.desk.answer([(b"x", b"not json", None), (b"y", b'{"v":1,"k":"nope","b":{}}', None)])
    assert desk.sent == []


def test_cluster_status_names_the_leader_by_the_lease_not_by_a_stale_row(desk: Desk) -> None:
    store = desk.store
    store.claim_lease("m1", "tcp://m1:8080", 3.0)
    store.announce_master("m1", "tcp://m1:8080", "leader")
    store.announce_master("m2", "tcp://m2:8080", "standby")
    desk.now += 4.0  # m1 was killed: its row still says leader; m2 takes the lease
    store.claim_lease("m2", "tcp://m2:8080", 3.0)
    assert cluster_status(store) == {
        "leader": "m2", "term": 2, "address": "tcp://m2:8080",
        "masters": [{"name": "m1", "address": "tcp://m1:8080", "role": "standby", "last_seen": T0},
                    {"name": "m2", "address": "tcp://m2:8080", "role": "leader", "last_seen": T0}]}


def test_any_master_answers_cluster_status_and_checks_the_key(tmp_path: Path) -> None:
    desk = Desk(tmp_path, legacy_key="sekrit")
    desk.store.claim_lease("m1", "tcp://m1:8080", 3.0)
    assert desk.request("cluster")["status"] == 401
    reply = desk.request("cluster", key="sekrit")
    assert reply["status"] == 200 and reply["body"]["leader"] == "m1" and reply["body"]["term"] == 1
    _, worker_key = create_key(desk.store, "worker", None)
    assert desk.request("cluster", key=worker_key)["status"] == 401, "a worker key may not read"


def test_only_cluster_requests_are_picked_out_of_the_leaders_frames() -> None:
    assert is_cluster_request(encode(Kind.REQUEST, {"rid": "1", "op": "cluster"}))
    assert not is_cluster_request(encode(Kind.REQUEST, {"rid": "1", "op": "list", "args": {"queue": "cluster"}}))
    assert not is_cluster_request(encode(Kind.HELLO, {**HELLO, "name": "cluster"}))
    assert not is_cluster_request(b'"cluster" but not a message')


def test_the_client_reads_a_not_leader_reply_as_a_redirect() -> None:
    body = {"rid": "1", "status": NOT_LEADER, "error": "not the leader; the leader is tcp://m2:8080, term 3",
            "body": not_leader_body(Lease("m2", 3, "tcp://m2:8080", 1.0))}
    redirect = reply_error(body)
    assert isinstance(redirect, NotLeaderReply) and redirect.leader == "tcp://m2:8080"
    assert isinstance(reply_error({"rid": "1", "status": 404, "error": "no job"}), NotFound)


# ---- lists of masters ---------------------------------------------------------------------------------


def test_a_list_of_masters_keeps_its_order_and_names_each_once() -> None:
    assert parse_masters("tcp://a:8080, b:9090,,tcp://a:8080") == ["tcp://a:8080", "tcp://b:9090"]
    assert parse_masters("tcp://127.0.0.1:8080") == ["tcp://127.0.0.1:8080"]
    assert parse_address("ipc:///run/ffrtmp.sock") == "ipc:///run/ffrtmp.sock"


@pytest.mark.parametrize("text", ["", " , ", "tcp://a", "tcp://a:port", "tcp://:8080", "tcp://a:70000",
                                  "tcp://a:8080/path"])
def test_a_bad_list_of_masters_is_one_clear_error_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_masters(text)
    assert refused.value.field == "master"


def test_the_list_follows_a_named_leader_and_learns_one_it_did_not_hold() -> None:
    masters = MasterList.parse("tcp://a:1,tcp://b:2")
    assert masters.address == "tcp://a:1"
    assert masters.follow("tcp://b:2") == "tcp://b:2" and masters.next() == "tcp://a:1"
    assert masters.follow("tcp://c:3") == "tcp://c:3" and masters.learned == ["tcp://c:3"]
    assert len(masters) == 3 and masters.follow(None) == "tcp://a:1", "no leader named: the next one"


def test_a_leader_named_is_read_defensively() -> None:
    assert leader_named({"leader": "tcp://m:1"}) == "tcp://m:1"
    for body in (None, {}, {"leader": None}, {"leader": 5}, {"leader": "tcp://no-port"}):
        assert leader_named(body) is None


def test_a_closed_port_refuses_and_an_open_one_does_not() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not refuses_connections(f"tcp://127.0.0.1:{port}")
    assert refuses_connections(f"tcp://127.0.0.1:{port}")
    assert not refuses_connections("ipc:///nowhere")
