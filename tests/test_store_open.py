"""Bad data dirs (F10, docs/design.md): each is one line naming the path, exit 2, no traceback, nothing taken over.

The unit tests open the store in-process; the slow ones start the real `ffrtmp master` on each bad dir, with
read-only and full file systems made of tmpfs mounts (root only) and permission cases run as `nobody`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission
from ffrtmp.master.store import Store
from ffrtmp.master.store.opening import open_store, prepare_data_dir
from tests.conftest import eventually

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounts and setpriv need root")
NOBODY = 65534


def make_store(path: Path, jobs: int = 2000) -> None:
    """A valid ffrtmp store with some jobs, checkpointed into the main file (no -wal beside it)."""
    store = Store(path)
    with store.transaction():
        store.insert_jobs([validate_submission({"scenario": "x", "engine": "null"})] * jobs, 1.0, 3)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def foreign(path: Path, table: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute(f"INSERT INTO {table} (name) VALUES ('alice')")
    conn.commit()
    conn.close()


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


def refused(call: Callable[[], object], field: str) -> str:
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
    return info.value.problem


# ---- unit tier: the checks themselves -----------------------------------------------------------------


@pytest.mark.parametrize("table", ["users", "jobs"])
def test_another_applications_database_is_refused_and_left_untouched(tmp_path: Path, table: str) -> None:
    db = tmp_path / "master.db"
    foreign(db, table)
    problem = refused(lambda: open_store(db), "db")
    assert str(db) in problem and "not an ffrtmp store" in problem and table in problem
    assert tables(db) == [table]  # no ffrtmp table, no migrations record added


def test_an_empty_file_and_an_ffrtmp_store_open(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    open_store(tmp_path / "empty.db").close()
    make_store(tmp_path / "ours.db", jobs=3)
    store = open_store(tmp_path / "ours.db")
    assert store.status_counts() == {"pending": 3}
    store.close()


def test_garbage_and_a_truncated_store_name_the_file_and_what_to_do(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    assert "is not an SQLite database" in refused(lambda: open_store(garbage), "db")
    make_store(tmp_path / "whole.db")
    data = (tmp_path / "whole.db").read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(data[:len(data) // 3])
    problem = refused(lambda: open_store(truncated), "db")
    assert str(truncated) in problem and "damaged" in problem and "backup" in problem


def test_a_data_dir_that_is_a_file_and_a_db_that_is_a_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is a file, not a directory" in refused(lambda: prepare_data_dir(tmp_path / "file"), "data-dir")
    (tmp_path / "dir.db").mkdir()
    assert "is a directory" in refused(lambda: open_store(tmp_path / "dir.db"), "db")


# ---- slow tier: the real `ffrtmp master` on each bad data dir ------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "16m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Write a ballast file until the file system is full."""
    with open(directory / "ballast", "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * (1 << 20))
            out.flush()


def master_args(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ffrtmp", "master", "--bind", "127.0.0.1", "--port", "0", "--no-metrics",
            "--data-dir", str(data_dir), *extra]


def as_nobody(args: list[str]) -> list[str]:
    return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *args]


def start_refused(args: list[str]) -> str:
    """Run the master, which must exit 2 within seconds with one `error:` line and no traceback."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def starts(args: list[str], data_dir: Path) -> None:
    """Run the master until it listens (master.json names its pid), then stop it."""
    log = data_dir.parent / f"{data_dir.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(OSError, ValueError):
                return bool(json.loads((data_dir / "master.json").read_text())["pid"] == proc.pid)
            return False

        eventually(listening, timeout=30, message="the master to listen")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir that `nobody` can reach (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ffrtmp-f10-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_the_master_refuses_bad_stores_with_one_line_and_exit_2(tmp_path: Path) -> None:
    cases: dict[str, tuple[Callable[[Path], None], str]] = {
        "garbage": (lambda d: (d / "master.db").write_bytes(os.urandom(8192)), "is not an SQLite database"),
        "users": (lambda d: foreign(d / "master.db", "users"), "not an ffrtmp store"),
        "jobs": (lambda d: foreign(d / "master.db", "jobs"), "not an ffrtmp store"),
        "truncated": (lambda d: (d / "master.db").write_bytes((tmp_path / "whole.db").read_bytes()[:400_000]),
                      "damaged"),
        "db-dir": (lambda d: (d / "master.db").mkdir(), "is a directory"),
        "bad-key": (lambda d: (d / "master.key_secret").write_text("garbage"), "CURVE certificate"),
    }
    make_store(tmp_path / "whole.db")
    for name, (prepare, expected) in cases.items():
        data_dir = tmp_path / name
        data_dir.mkdir()
        prepare(data_dir)
        line = start_refused(master_args(data_dir))
        assert expected in line, (name, line)
    assert tables(tmp_path / "users" / "master.db") == ["users"]
    (tmp_path / "file").write_text("not a dir")
    assert "file is a file, not a directory" in start_refused(master_args(tmp_path / "file")).replace(
        str(tmp_path) + "/", "")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "master.db").touch()
    starts(master_args(empty), empty)  # an empty file is a new store


@pytest.mark.slow
@needs_root
def test_a_read_only_file_system_is_refused_as_a_data_dir_and_as_a_db(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro") as ro:
        make_store(ro / "master.db")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        assert "read-only file system" in start_refused(master_args(ro))
        line = start_refused(master_args(tmp_path / "elsewhere", "--db", str(ro / "master.db")))
        assert str(ro / "master.db") in line and "read-only file system" in line


@pytest.mark.slow
@needs_root
def test_read_only_permissions_are_refused_at_start_not_after(shared_tmp: Path) -> None:
    """A chmod 444 store opened by its unprivileged owner: it must not start and look healthy."""
    store_dir, locked_dir = shared_tmp / "store", shared_tmp / "locked"
    for directory in (store_dir, locked_dir):
        directory.mkdir()
        make_store(directory / "master.db")
        shutil.chown(directory, NOBODY, NOBODY)
        shutil.chown(directory / "master.db", NOBODY, NOBODY)
    (store_dir / "master.db").chmod(0o444)
    line = start_refused(as_nobody(master_args(store_dir)))
    assert str(store_dir / "master.db") in line and "read-only for this user" in line
    locked_dir.chmod(0o555)
    line = start_refused(as_nobody(master_args(locked_dir)))
    assert str(locked_dir) in line and "not writable by this user" in line
    # The data dir elsewhere, the db writable itself but in a locked dir: SQLite cannot write beside it.
    elsewhere = shared_tmp / "data"
    elsewhere.mkdir()
    shutil.chown(elsewhere, NOBODY, NOBODY)
    line = start_refused(as_nobody(master_args(elsewhere, "--db", str(locked_dir / "master.db"))))
    assert str(locked_dir / "master.db") in line and "cannot be written" in line


@pytest.mark.slow
@needs_root
def test_a_full_disk_at_start_is_one_line_and_exit_2_and_starts_once_freed(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full") as full:
        make_store(full / "master.db")
        fill(full)
        line = start_refused(master_args(full))
        assert f"store full: {full} has" in line and "MiB free" in line
        (full / "ballast").unlink()
        starts(master_args(full), full)
