"""`POST /api/jobs` on its fast path (http_submit.py): the same request and answers as through tornado.web, on
one keep-alive connection; and the bridge's batched hand-offs (one wake-up per burst, both ways)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
from pathlib import Path

from ffrtmp.master.api_bridge import ApiBridge, ReplyPump
from ffrtmp.master.http_api import ApiLimits
from ffrtmp.protocol import Kind, decode, encode
from tests.conftest import eventually
from tests.test_http_limits import bare_api, tls_connection


def read_answer(conn: ssl.SSLSocket) -> tuple[int, dict[str, str], object]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += conn.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest)


def post(conn: ssl.SSLSocket, body: bytes, *extra: str) -> None:
    head = "".join(f"{line}\r\n" for line in ("POST /api/jobs HTTP/1.1", "Host: x", *extra,
                                               f"Content-Length: {len(body)}"))
    conn.sendall(head.encode() + b"\r\n" + body)


def test_submits_answer_as_before_on_one_keep_alive_connection(tmp_path: Path) -> None:
    replies = iter([
        {"status": 200, "body": {"ids": ["a" * 32]}},
        {"status": 429, "error": "rate limited: too many submits; retry after 3s"},
        {"status": 401, "error": "unknown API key"},
    ])
    seen: list[tuple[str, dict[str, object], object, str]] = []

    def play_the_loop(bridge: ApiBridge) -> None:
        for _ in range(3):
            (route, frame, sender), = eventually(lambda: bridge.take(10), message="a queued submit")
            request = decode(frame)
            seen.append((request.body["op"], request.body["args"], request.body.get("key"), sender))
            bridge.deliver(route, encode(Kind.REPLY, {"rid": request.body["rid"], **next(replies)}))

    with bare_api(tmp_path, ApiLimits(request_timeout=5)) as (curl, bridge):
        loop = threading.Thread(target=play_the_loop, args=(bridge,))
        loop.start()
        with tls_connection(curl) as conn:
            post(conn, b'{"scenario": "null", "engine": "ffmpeg"}', "Authorization: Bearer k1", "Idempotency-Key: i1")
            status, headers, body = read_answer(conn)
            assert (status, body) == (201, {"ids": ["a" * 32]})
            assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
            assert headers["date"].endswith(" GMT")
            post(conn, b'[{"scenario": "null"}, {"scenario": "null"}]')
            status, headers, body = read_answer(conn)
            assert status == 429 and headers["retry-after"] == "3" and "rate limited" in body["error"]
            post(conn, b'{"jobs": [{"scenario": "null"}], "idempotency_key": "i2"}', "Authorization: Bearer bad")
            status, headers, body = read_answer(conn)
            assert status == 401 and headers["www-authenticate"] == 'Bearer realm="ffrtmp"'
            # Refused before the loop: bad JSON, a body of the wrong shape, a malformed Authorization header.
            for payload, extra, field in ((b"{not json", (), "body"), (b'"a job?"', (), "body"),
                                          (b"{}", ("Authorization: Basic x",), "Authorization")):
                post(conn, payload, *extra)
                status, _, body = read_answer(conn)
                assert status in (400, 401) and body["field"] == field, body
        loop.join(10)
        assert bridge.take(10) == []
    assert seen == [
        ("submit", {"jobs": [{"scenario": "null", "engine": "ffmpeg"}], "idempotency_key": "i1"}, "k1",
         "http:127.0.0.1"),
        ("submit", {"jobs": [{"scenario": "null"}, {"scenario": "null"}]}, None, "http:127.0.0.1"),
        ("submit", {"jobs": [{"scenario": "null"}], "idempotency_key": "i2"}, "bad", "http:127.0.0.1"),
    ]


def test_a_client_gone_before_its_reply_drops_its_route_and_others_are_served(tmp_path: Path) -> None:
    with bare_api(tmp_path, ApiLimits(request_timeout=5)) as (curl, bridge):
        conn = tls_connection(curl)
        post(conn, b'{"scenario": "null"}')
        (route, frame, _), = eventually(lambda: bridge.take(10), message="the submit queued")
        conn.close()
        eventually(lambda: route not in bridge._routes, message="the route dropped when the client left")
        assert bridge.deliver(route, encode(Kind.REPLY, {"rid": "h", "status": 200, "body": {}})) is False
        with tls_connection(curl) as other:
            post(other, b'{"scenario": "null"}')
            (route, frame, _), = eventually(lambda: bridge.take(10), message="the next submit queued")
            assert bridge.deliver(route, encode(Kind.REPLY, {"rid": "h", "status": 200, "body": {"ids": []}}))
            assert read_answer(other)[:1] == (201,)


def test_a_burst_of_requests_wakes_the_loop_once() -> None:
    bridge = ApiBridge()
    try:
        for n in range(50):
            assert bridge.put(b"\xffhttp" + bytes([n]), b"frame", "http:x")
        assert os.read(bridge.fileno(), 100) == b"!"  # one byte: one wake-up for the 50
        assert len(bridge.take(10)) == 10
        assert os.read(bridge.fileno(), 100) == b"!"  # 40 left: readable again, so the loop comes back
        assert len(bridge.take(100)) == 40
        assert bridge.put(b"\xffhttp\x00", b"frame", "http:x")  # empty again: the next one wakes it
        assert os.read(bridge.fileno(), 100) == b"!"
    finally:
        bridge.shutdown()


def test_replies_of_one_turn_wake_the_http_thread_once_and_none_is_lost() -> None:
    async def run() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        wakes = 0

        def schedule(callback: object) -> None:
            nonlocal wakes
            wakes += 1
            loop.call_soon_threadsafe(callback)  # type: ignore[arg-type]

        pump = ReplyPump(schedule)
        got: list[int] = []
        everything = asyncio.Event()

        def deliver(frame: bytes) -> None:
            got.append(int(frame))
            if len(got) == 2000:
                everything.set()

        def master_loop() -> None:  # one turn of 1,000 replies, then 1,000 more, one at a time
            for n in range(1000):
                pump.push(deliver, str(n).encode())
            for n in range(1000, 2000):
                pump.push(deliver, str(n).encode())
                if n % 100 == 0:
                    threading.Event().wait(0.001)

        thread = threading.Thread(target=master_loop)
        thread.start()
        await asyncio.wait_for(everything.wait(), 10)
        thread.join()
        return wakes, got

    wakes, got = asyncio.run(run())
    assert got == list(range(2000))
    assert wakes < 1000  # far fewer wake-ups than replies (one per reply before)


def test_a_reply_callback_that_fails_does_not_hold_back_the_others() -> None:
    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        pump = ReplyPump(loop.call_soon_threadsafe)
        got: list[bytes] = []

        def broken(frame: bytes) -> None:
            raise RuntimeError("a bug in one request's answer")

        pump.push(broken, b"1")
        pump.push(got.append, b"2")
        await asyncio.sleep(0)
        eventually_done = loop.create_future()
        loop.call_soon(eventually_done.set_result, None)
        await eventually_done
        return got

    assert asyncio.run(run()) == [b"2"]
