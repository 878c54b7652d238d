"""A real nginx-rtmp server for tests, and a way to read a live stream back from it.

Debian's `nginx` with `libnginx-mod-rtmp`, started with its own config on a free loopback port, in the
foreground (`daemon off`, one process: `master_process off`) with its prefix, pid and logs in a temp dir, so
stopping it is stopping one child process. `wait_key`/`wait_video` make a reader that joins mid-stream
start at a key frame, so `ffprobe` sees the video stream at once.

Use the `rtmp_server` fixture (conftest.py imports it), or `start_rtmp_server()` directly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules")
MODULE_FILE = "ngx_rtmp_module.so"
START_TIMEOUT = 10.0

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log info;
load_module {module};
events {{ worker_connections 128; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record off;
            wait_key on;
            wait_video on;
        }}
    }}
}}
"""


class RtmpServerError(RuntimeError):
    """nginx did not come up: the message carries the tail of its error log."""


def find_nginx_rtmp() -> tuple[str, str] | None:
    """(nginx binary, rtmp module path), or None when either is missing."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")  # sbin: not on PATH
    module = next((str(Path(d) / MODULE_FILE) for d in MODULE_DIRS if (Path(d) / MODULE_FILE).exists()), None)
    return (nginx, module) if nginx and module else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as conn:
        conn.settimeout(0.2)
        return conn.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RtmpServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "logs" / "error.log").read_text().splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nginx: fast shutdown
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_rtmp_server(root: Path, nginx: str, module: str, attempts: int = 3) -> RtmpServer:
    """nginx-rtmp on a free loopback port, listening when this returns (retries if the port was taken)."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        port = free_port()
        config = root / "nginx.conf"
        config.write_text(CONFIG.format(root=root, module=module, port=port))
        process = subprocess.Popen([nginx, "-p", str(root), "-c", str(config), "-e", str(root / "logs" / "error.log")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RtmpServer(root, port, process)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _listening(port):
                return server
            time.sleep(0.02)
        server.stop()
    raise RtmpServerError(f"nginx-rtmp did not start in {root}:\n{server.log_tail()}")


def read_stream(ffprobe: str, url: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The streams a player finds at `url` (codec, size), read while the publisher pushes."""
    # No frame-rate probing and a short analysis: both streams are known after the first key frame.
    done = subprocess.run([ffprobe, "-v", "error", "-analyzeduration", "1000000", "-fpsprobesize", "0",
                           "-rw_timeout", "5000000", "-show_entries", "stream=codec_type,codec_name,width,height",
                           "-of", "json", url],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        return []
    streams: list[dict[str, Any]] = json.loads(done.stdout).get("streams", [])
    return streams


@pytest.fixture(scope="session")
def rtmp_server(nginx_rtmp: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtmpServer]:
    """One nginx-rtmp for the session; tests push to their own stream keys."""
    server = start_rtmp_server(tmp_path_factory.mktemp("nginx-rtmp"), *nginx_rtmp)
    try:
        yield server
    finally:
        server.stop()
