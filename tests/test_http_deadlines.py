"""The HTTP API's read deadlines (http_deadlines.py): an idle keep-alive connection, a client trickling its
headers and one stalling its body are closed in time; a request being answered and a busy keep-alive
connection are not."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

from ffrtmp.master.http_api import ApiLimits
from ffrtmp.protocol import Kind, encode
from tests.conftest import eventually
from tests.test_http_limits import bare_api, tls_connection

LIMITS = ApiLimits(idle_timeout=0.8, body_timeout=0.8, request_timeout=5)


def closed_by_server(conn: ssl.SSLSocket, within: float) -> float:
    """Seconds until the server closed `conn` (reads give EOF or fail), failing after `within`."""
    began = time.monotonic()
    conn.settimeout(within)
    try:
        while conn.recv(4096):
            pass
    except (OSError, ssl.SSLError) as exc:
        assert not isinstance(exc, TimeoutError), f"still open after {within}s"
    return time.monotonic() - began


def test_idle_and_trickling_connections_are_closed_at_the_idle_deadline(tmp_path: Path) -> None:
    with bare_api(tmp_path, LIMITS) as (curl, _):
        idle = tls_connection(curl)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in idle.recv(4096)  # answered, then idle on keep-alive
        loris = tls_connection(curl)
        began = time.monotonic()
        while time.monotonic() - began < 3:  # one header byte every 0.1 s: never idle, never done
            try:
                loris.sendall(b"X")
            except (OSError, ssl.SSLError):
                break
            time.sleep(0.1)
        loris_open = time.monotonic() - began
        assert 0.6 <= loris_open < 2.5, loris_open
        assert closed_by_server(idle, 3) < 3
        loris.close()
        idle.close()


def test_a_stalled_body_is_cut_but_a_slow_answer_and_a_busy_connection_are_not(tmp_path: Path) -> None:
    with bare_api(tmp_path, LIMITS) as (curl, bridge):
        stalled = tls_connection(curl)
        stalled.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert 0.5 < closed_by_server(stalled, 3) < 3
        assert bridge.take(10) == []  # never read whole, never queued
        stalled.close()

        waiting = tls_connection(curl)  # its request is read; the loop takes 1.5 s to answer
        waiting.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        (route, _, _), = eventually(lambda: bridge.take(10), message="the submit queued")
        time.sleep(2 * LIMITS.idle_timeout)  # past both deadlines: answering is not reading
        bridge.deliver(route, encode(Kind.REPLY, {"rid": "h", "status": 200, "body": {"ids": []}}))
        assert b" 201 " in waiting.recv(4096)

        for _ in range(8):  # a request every 0.3 s for 2.4 s on one connection: each resets its deadline
            waiting.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in waiting.recv(4096)
            time.sleep(0.3)
        waiting.close()
