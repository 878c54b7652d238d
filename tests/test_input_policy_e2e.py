"""The H1/H2/M6 attacks (docs/design.md), black box: a real master and workers, an "attacker" RTMP server, an "internal
service" on 127.0.0.1 and a secret text file on the worker. Each attack worked before the input policy.

Two workers: `strict` runs with the defaults (no input roots, public hosts only), `open` reads inputs under
`roots/` and may reach 127.0.0.1. Jobs pick one with `--label box=…`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from ffrtmp.local import LocalCluster
from tests.conftest import eventually
from tests.rtmp import free_port

pytestmark = pytest.mark.slow

SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nDB_PASSWORD=hunter2-hunter2\n" * 12
TINY: dict[str, Any] = {"resolution": "160x120", "fps": 10, "duration": 1, "codec": "h264", "bitrate": "100k",
                        "engine": "ffmpeg", "max_retries": 0}


@dataclass
class Attack:
    cluster: LocalCluster
    roots: Path
    secret: Path
    """A text file inside the open worker's input root."""
    outside: Path
    """The same text outside it."""
    escape: Path
    """A link inside the root to the text outside it: the master routes by path, the worker must refuse it."""

    def run(self, box: str, **job: Any) -> dict[str, Any]:
        with self.cluster.client() as client:
            job_id = client.submit("attack", labels={"box": box}, **{**TINY, **job})
            return client.wait(job_id, timeout=60)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Iterator[Attack]:
    root = tmp_path_factory.mktemp("input-policy")
    roots = root / "roots"
    roots.mkdir()
    secret = roots / "credentials.txt"  # inside the open worker's root: only the demuxer allow-list stops it
    secret.write_text(SECRET)
    outside = root / "credentials.txt"
    outside.write_text(SECRET)
    escape = roots / "escape.mp4"
    escape.symlink_to(outside)
    with LocalCluster(root / "cluster") as cluster:
        cluster.start_master()
        cluster.start_worker("strict", "--label", "box=strict")
        cluster.start_worker("open", "--label", "box=open", "--input-root", str(roots), "--allow-private-network")
        cluster.wait_for_nodes(["strict", "open"])
        yield Attack(cluster, roots, secret, outside, escape)


@pytest.fixture
def attacker_rtmp(tmp_path: Path, ffmpeg: str) -> Iterator[tuple[str, Path]]:
    """`ffmpeg -listen 1` on 127.0.0.1, saving whatever is pushed to it: (its URL, the loot file)."""
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/loot"
    loot = tmp_path / "loot.flv"
    proc = subprocess.Popen([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-listen", "1", "-f", "flv",
                             "-i", url, "-c", "copy", "-y", str(loot)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Not by connecting: `-listen 1` serves one connection, and a probe would be it.
        eventually(lambda: _process_listens(proc.pid, port), timeout=10, message="the attacker's RTMP server")
        yield url, loot
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def internal_service(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`python -m http.server` on 127.0.0.1 serving a fake cloud-metadata document: (its port, its request log)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "meta.json").write_text(json.dumps({"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": SECRET}))
    port = free_port()
    log = tmp_path / "http.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                 str(site), str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        eventually(lambda: _listening(port), timeout=10, message="the internal service to listen")
        yield port, log
    finally:
        proc.terminate()
        proc.wait(5)


def _process_listens(pid: int, port: int) -> bool:
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
               for c in psutil.Process(pid).net_connections("tcp"))


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as conn:
        conn.settimeout(0.2)
        return conn.connect_ex(("127.0.0.1", port)) == 0


def loot_size(loot: Path) -> int:
    return loot.stat().st_size if loot.exists() else 0


def test_a_secret_text_file_outside_the_input_roots_is_not_read(attack: Attack,
                                                                attacker_rtmp: tuple[str, Path]) -> None:
    url, loot = attacker_rtmp
    job = attack.run("open", input=str(attack.escape), output=url)  # under the root by name, outside by link
    assert (job["status"], job["failure"]) == ("failed", "invalid_input"), job
    assert "does not exist on this worker or is outside its --input-root dirs" in job["error"]
    assert loot_size(loot) == 0
    with attack.cluster.client() as client:  # no worker sees the file's dir (strict has no roots): none is given it
        strict = client.submit("attack", labels={"box": "strict"}, input=str(attack.outside), **TINY)

        def waiting_with_a_reason() -> dict[str, Any] | None:
            shown = client.get(strict)
            return shown if shown["reason"] else None

        waiting = eventually(waiting_with_a_reason, timeout=30, message="the wait reason")
        client.cancel(strict)
    assert waiting["status"] == "pending" and waiting["attempts"] == 0, waiting
    assert f"can see {attack.outside.parent} (add --input-root or --path-map)" in waiting["reason"]
    assert loot_size(loot) == 0


def test_a_text_file_inside_an_input_root_is_never_rendered_as_video(attack: Attack,
                                                                     attacker_rtmp: tuple[str, Path]) -> None:
    url, loot = attacker_rtmp
    job = attack.run("open", input=str(attack.secret), output=url)
    assert job["status"] == "failed", job
    assert "not on whitelist" in job["error"]  # probing found the tty demuxer, which is not allowed
    assert loot_size(loot) == 0


def test_an_internal_http_service_is_not_reached(attack: Attack, internal_service: tuple[int, Path],
                                                 attacker_rtmp: tuple[str, Path]) -> None:
    port, requests = internal_service
    url, loot = attacker_rtmp
    job = attack.run("strict", input=f"http://127.0.0.1:{port}/meta.json?.txt", output=url)
    assert (job["status"], job["failure"]) == ("failed", "invalid_input"), job
    assert "loopback" in job["error"] and "--allow-private-network" in job["error"]
    assert "GET" not in requests.read_text()
    assert loot_size(loot) == 0


def test_an_allowed_internal_service_is_still_never_rendered_from_text(attack: Attack,
                                                                        internal_service: tuple[int, Path],
                                                                        attacker_rtmp: tuple[str, Path]) -> None:
    port, _ = internal_service
    url, loot = attacker_rtmp
    job = attack.run("open", input=f"http://127.0.0.1:{port}/meta.json?.txt", output=url)
    assert job["status"] == "failed", job
    assert "SecretAccessKey" not in json.dumps(job)
    assert loot_size(loot) == 0


def test_an_rtmp_push_to_a_loopback_server_is_refused(attack: Attack, attacker_rtmp: tuple[str, Path]) -> None:
    url, loot = attacker_rtmp
    job = attack.run("strict", output=url)
    assert (job["status"], job["failure"]) == ("failed", "invalid_input"), job
    assert "output" in job["error"] and "loopback" in job["error"]
    assert loot_size(loot) == 0


def test_the_worker_with_allow_private_network_pushes_to_it(attack: Attack, attacker_rtmp: tuple[str, Path]) -> None:
    """The control: the same push from the worker that allows its local networks arrives."""
    url, loot = attacker_rtmp
    job = attack.run("open", output=url)
    assert job["status"] == "completed", (job["error"], attack.cluster.log_tail("open"))
    eventually(lambda: loot_size(loot) > 0, timeout=10, message="the pushed stream to arrive")


def test_a_file_inside_the_input_root_is_transcoded(attack: Attack) -> None:
    clip = attack.roots / "clip.mp4"
    with attack.cluster.client() as client:
        made = client.wait(client.submit("make", labels={"box": "open"}, **TINY), timeout=60)
    assert made["status"] == "completed", made
    clip.write_bytes(Path(made["output"]).read_bytes())
    job = attack.run("open", input="clip.mp4")  # relative: looked up in the input roots
    assert job["status"] == "completed", job


@pytest.mark.parametrize(("field", "value"), [
    ("input", "concat:/etc/passwd|/etc/X11/rgb.txt"),
    ("input", "subfile,,start,0,end,100,,:/etc/passwd"),
    ("input", "data:text/plain,hello"),
    ("input", "tcp://127.0.0.1:9?listen=1&listen_timeout=15000"),
    ("input", "srt://127.0.0.1:9?mode=listener"),
    ("output", "concat:/etc/passwd|/etc/X11/rgb.txt/x.mp4"),
])
def test_the_cli_refuses_protocol_tricks_at_submit(attack: Attack, field: str, value: str) -> None:
    cluster = attack.cluster
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--scenario", "trick", f"--{field}",
                           value, *cluster.connection_args()], capture_output=True, text=True, env=cluster.env,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert f"{field}:" in done.stderr and "Traceback" not in done.stderr
