"""A PostgreSQL server of the bench's own: `initdb` into a temp dir, `pg_ctl` on a free loopback port.

A bench that restarts its database must never touch the machine's shared server (other people's tests use
it): this one is made, restarted and removed by the bench alone. Run as root, the server runs as the
`postgres` user (PostgreSQL refuses to run as root); its directory is given to that user.

    with private_postgres() as pg:
        url = pg.create_database("bench")
        pg.restart()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/17/bin"))


def find_bin_dir() -> Path:
    """Where initdb and pg_ctl are: $PG_BIN, the Debian directories, then PATH."""
    candidates = [Path(os.environ["PG_BIN"])] if os.environ.get("PG_BIN") else []
    candidates += list(BIN_DIRS)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise RuntimeError("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql, or set PG_BIN)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    def __init__(self, root: Path, bin_dir: Path | None = None) -> None:
        self.bin = bin_dir or find_bin_dir()
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = _free_port()
        self._as_postgres: Callable[[], None] | None = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)

            def drop() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            self._as_postgres = drop

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        # Output to a file, not a pipe: a server started here inherits it and would hold a pipe open.
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                                  preexec_fn=self._as_postgres, cwd=self.root, check=False)
            out.seek(0)
            said = out.read().strip()
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {said}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--locale=C")

    def start(self) -> None:
        # The socket in our own dir: never /var/run/postgresql, which the machine's server owns.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100"
                   " -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """A real restart: every connection is cut, the server comes back on the same port. (Stop, then
        start: `pg_ctl restart` forgets `-l`, and the server would then hold our output pipe open.)"""
        self.stop("fast")
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh private server, started; stopped and its directory removed at the end."""
    with tempfile.TemporaryDirectory(prefix="ffrtmp-bench-pg-") as root:
        server = PrivatePostgres(Path(root))
        server.init()
        server.start()
        try:
            yield server
        finally:
            if server.running():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    server.stop("immediate")
            deadline = time.monotonic() + 10
            while server.running() and time.monotonic() < deadline:
                time.sleep(0.1)
