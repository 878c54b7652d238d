"""A master in this test process with its HTTPS API on a free port, and `curl` as the HTTP client."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.server import MasterOptions, MasterServer
from tests.inprocess import InProcessCluster


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Curl:
    base: str
    cacert: Path

    def __call__(self, method: str, path: str, *, key: str | None = None, body: Any = None,
                 headers: dict[str, str] | None = None, timeout: float = 20.0) -> Response:
        argv = ["curl", "-sS", "--cacert", str(self.cacert), "-X", method, "-D", "-", "--max-time", str(timeout)]
        if key is not None:
            argv += ["-H", f"Authorization: Bearer {key}"]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary",
                     body if isinstance(body, str) else json.dumps(body)]
        done = subprocess.run([*argv, self.base + path], capture_output=True, text=True, timeout=timeout + 5,
                              check=False)
        assert done.returncode == 0, done.stderr
        head, _, text = done.stdout.partition("\n\n")  # text mode: curl's CRLFs read as LFs
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return Response(status, {name.lower(): value for name, value in fields.items()}, text)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self("POST", path, **kwargs)


@contextmanager
def http_master(root: Path, allow_keys: Path | None = None, master: dict[str, Any] | None = None,
                **config: Any) -> Iterator[tuple[InProcessCluster, Curl]]:
    """The master (CURVE on, in a thread), its HTTPS API on a free port, and curl trusting its certificate.
    `master`: more MasterOptions (`files_port=-1` gives it a file store and a data channel)."""
    from ffrtmp.security import write_certificates

    write_certificates(root / "_config", "client")
    options = MasterOptions(bind="127.0.0.1", port=0, data_dir=root / "master", metrics=False, api_port=-1,
                            api_bind="127.0.0.1", allow_keys=allow_keys, config=MasterConfig(**config),
                            **(master or {}))
    server = MasterServer(options)
    thread = threading.Thread(target=server.run, name="master", daemon=True)
    thread.start()
    cluster = InProcessCluster(root, server, thread)
    assert server.api is not None
    try:
        yield cluster, Curl(f"https://localhost:{server.api.port}", root / "master" / "api-cert.pem")
    finally:
        cluster.stop()
