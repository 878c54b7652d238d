"""What a slow, greedy or hostile HTTP client can cost: bounded connections, bodies and waits, and never the
master's loop (ZeroMQ clients and other HTTP clients are answered meanwhile)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

from ffrtmp.master.api_bridge import ApiBridge
from ffrtmp.master.http_api import ApiLimits, HttpApi
from ffrtmp.master.http_tls import self_signed, server_context
from ffrtmp.protocol import Kind, decode, encode
from tests.conftest import eventually
from tests.httpapi import Curl, http_master


@contextlib.contextmanager
def bare_api(tmp_path: Path, limits: ApiLimits, bridge: ApiBridge | None = None) -> Iterator[tuple[Curl, ApiBridge]]:
    """The HTTP server alone, with no loop draining its bridge (the test plays the loop)."""
    cert, key, _ = self_signed(tmp_path)
    bridge = bridge or ApiBridge()
    api = HttpApi(bridge, "127.0.0.1", 0, server_context(cert, key), limits)
    api.start()
    try:
        yield Curl(f"https://localhost:{api.port}", cert), bridge
    finally:
        api.stop()
        bridge.shutdown()


def tls_connection(curl: Curl) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(curl.cacert))
    port = int(curl.base.rsplit(":", 1)[1])
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")


def test_a_request_the_loop_does_not_answer_in_time_is_503_and_a_full_queue_is_503_at_once(tmp_path: Path) -> None:
    with bare_api(tmp_path, ApiLimits(request_timeout=0.3), ApiBridge(max_pending=1)) as (curl, bridge):
        slow = curl.get("/api/stats")
        assert slow.status == 503 and "did not answer within 0.3s" in slow.json()["error"]
        full = curl.get("/api/stats")  # the first is still queued (nobody drains it): no room
        assert full.status == 503 and full.headers["retry-after"] == "1"
        assert len(bridge.take(10)) == 1


def test_replies_find_their_request_and_a_closed_route_refuses_delivery(tmp_path: Path) -> None:
    import threading

    with bare_api(tmp_path, ApiLimits(request_timeout=5)) as (curl, bridge):
        def play_the_loop() -> None:
            def taken() -> list[tuple[bytes, bytes, str]]:
                return bridge.take(10)

            (route, frame, sender), = eventually(taken, message="the request to be queued")
            request = decode(frame)
            assert (request.body["op"], request.body["key"], sender) == ("stats", "k1", "http:127.0.0.1")
            bridge.deliver(route, encode(Kind.REPLY, {"rid": request.body["rid"], "status": 200, "body": {"n": 1}}))

        loop = threading.Thread(target=play_the_loop)
        loop.start()
        assert curl.get("/api/stats", key="k1").json() == {"n": 1}
        loop.join()
        route = bridge.open(lambda frame: None)
        bridge.close(route)
        assert bridge.deliver(route, b"late") is False


def test_connections_past_the_cap_are_closed_and_big_bodies_refused(tmp_path: Path) -> None:
    with bare_api(tmp_path, ApiLimits(max_connections=2, max_body=1000)) as (curl, _):
        held = [tls_connection(curl) for _ in range(2)]
        try:
            refused = False
            try:
                with tls_connection(curl) as extra:
                    extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    refused = extra.recv(100) == b""
            except (OSError, ssl.SSLError):
                refused = True
            assert refused
        finally:
            for conn in held:
                conn.close()
        eventually(lambda: curl.get("/health").status in (200, 503), message="room again after closing")
        big = tls_connection(curl)
        big.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        try:
            answer = big.recv(200)
        except (OSError, ssl.SSLError):
            answer = b""
        assert b"201" not in answer  # never read, never queued
        big.close()


def test_a_slow_loris_client_stalls_neither_the_loop_nor_other_clients(tmp_path: Path) -> None:
    with http_master(tmp_path) as (cluster, curl):
        loris = [tls_connection(curl) for _ in range(20)]
        for conn in loris:
            conn.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")  # never finished
        began = time.monotonic()
        with cluster.client() as zmq_client:
            assert zmq_client.request("ping")["version"]
        assert curl.post("/api/jobs", body={"scenario": "null", "engine": "ffmpeg"}).status == 201
        assert time.monotonic() - began < 5
        for conn in loris:
            conn.close()
