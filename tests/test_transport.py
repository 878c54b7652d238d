"""Real CURVE sockets on 127.0.0.1: keys that match, keys that do not, and hostile frames."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import zmq

from ffrtmp.client import Client
from ffrtmp.errors import MasterUnreachable
from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.security import write_certificates
from tests.conftest import eventually
from tests.inprocess import inprocess_cluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_client_with_the_right_key_gets_answers(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster, cluster.client() as client:
        assert client.request("ping")["version"]


def test_a_wrong_master_key_fails_fast_with_a_message_that_names_address_and_key(tmp_path: Path) -> None:
    wrong_public, _ = zmq.curve_keypair()
    with inprocess_cluster(tmp_path) as cluster:
        client = Client(cluster.url, master_key=wrong_public.decode(), timeout=5)
        started = time.monotonic()
        with pytest.raises(MasterUnreachable) as caught:
            client.request("ping")
        client.close()
    assert time.monotonic() - started < 4.5, "the failed handshake is noticed before the timeout"
    assert cluster.url in str(caught.value) and "master key" in str(caught.value)
    assert caught.value.exit_code == 3


def test_no_master_listening_fails_within_the_timeout(tmp_path: Path) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    write_certificates(tmp_path / "keys", "m")
    client = Client(url, master_key=str(tmp_path / "keys" / "m.key"), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(MasterUnreachable) as caught:
        client.request("ping")
    client.close()
    assert time.monotonic() - started < 3
    assert url in str(caught.value) and "ffrtmp master" in str(caught.value)


def test_a_plaintext_client_cannot_talk_to_a_curve_master(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        client = Client(cluster.url, tls=False, timeout=2)
        with pytest.raises(MasterUnreachable) as caught:
            client.request("ping")
        client.close()
    assert "CURVE" in str(caught.value)


def test_allow_keys_admits_only_listed_clients(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    write_certificates(allowed, "friend")
    write_certificates(tmp_path / "other", "stranger")
    (allowed / "friend.key_secret").rename(tmp_path / "friend.key_secret")  # the dir holds public certs only
    options = MasterOptions(bind="127.0.0.1", port=0, data_dir=tmp_path / "m", metrics=False, allow_keys=allowed)
    server = MasterServer(options)
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        key = str(tmp_path / "m" / "master.key")
        with Client(server.url, master_key=key, client_key=tmp_path / "friend.key_secret", timeout=5) as friend:
            assert friend.request("ping")
        stranger = Client(server.url, master_key=key, client_key=tmp_path / "other" / "stranger.key_secret",
                          timeout=5)
        with pytest.raises(MasterUnreachable) as caught:
            stranger.request("ping")
        stranger.close()
        assert "allow-keys" in str(caught.value)
    finally:
        server.stop_event.set()
        thread.join(10)


def test_hostile_frames_are_dropped_and_the_master_keeps_serving(tmp_path: Path) -> None:
    with inprocess_cluster(tmp_path) as cluster:
        from ffrtmp.security import client_keypair, load_public_key
        from ffrtmp.transport import DealerSocket

        keys = client_keypair()
        rogue = DealerSocket(cluster.url, load_public_key(cluster.master_key), keys)
        for frame in (b"", b"\x00" * 100, b"{" * 100_000, b'{"v":1,"k":"result","b":{"job":1}}',
                      b'{"v":99,"k":"hello","b":{}}'):
            rogue.send(frame)
        rogue.socket.send_multipart([b"a", b"b", b"c"])
        counters = cluster.server.coordinator.counters
        eventually(lambda: counters.malformed >= 4, message="the master to see the malformed frames")
        rogue.send(b"x" * (5 * 1024 * 1024))  # above MAXMSGSIZE: the master drops this connection
        with cluster.client() as client:
            assert client.request("ping")
        rogue.close()
