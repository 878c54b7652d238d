"""The client against two bare ROUTER sockets standing in for a standby and the leader (no CURVE): what it
sends when redirected."""

from __future__ import annotations

import threading
from typing import Any

import zmq

from ffrtmp.client import Client
from ffrtmp.protocol import NOT_LEADER, Kind, decode, encode


def test_a_redirected_submit_carries_the_same_idempotency_key_to_the_leader() -> None:
    context = zmq.Context.instance()
    standby, leader = context.socket(zmq.ROUTER), context.socket(zmq.ROUTER)
    standby_port = standby.bind_to_random_port("tcp://127.0.0.1")
    leader_port = leader.bind_to_random_port("tcp://127.0.0.1")
    seen: list[tuple[str, dict[str, Any]]] = []

    def serve() -> None:
        poller = zmq.Poller()
        poller.register(standby, zmq.POLLIN)
        poller.register(leader, zmq.POLLIN)
        while len(seen) < 2 and poller.poll(10_000):
            for sock, name in ((standby, "standby"), (leader, "leader")):
                if sock.poll(0):
                    route, frame = sock.recv_multipart()
                    body = decode(frame).body
                    seen.append((name, body))
                    reply = ({"rid": body["rid"], "status": NOT_LEADER, "error": "not the leader",
                              "body": {"leader": f"tcp://127.0.0.1:{leader_port}", "name": "m1", "term": 3}}
                             if name == "standby" else {"rid": body["rid"], "status": 200, "body": {"ids": ["j1"]}})
                    sock.send_multipart([route, encode(Kind.REPLY, reply)])

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{standby_port}", tls=False, timeout=5.0) as client:
            assert client.submit("t", engine="null") == "j1"
            assert client.master == f"tcp://127.0.0.1:{leader_port}"
    finally:
        thread.join(10)
        standby.close(0)
        leader.close(0)
    assert [name for name, _ in seen] == ["standby", "leader"]
    keys = [body["args"]["idempotency_key"] for _, body in seen]
    assert keys[0] == keys[1] and len(keys[0]) == 32
