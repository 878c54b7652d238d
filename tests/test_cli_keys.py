"""`ffrtmp keys api …` and `ffrtmp keys quota …` on a master's database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffrtmp.cli.app import app
from ffrtmp.errors import FfrtmpError
from ffrtmp.master.auth import Authority
from ffrtmp.master.store import SqliteStore


def run(*args: str) -> tuple[int, str]:
    """Exit code and output, as `ffrtmp` (whose main() maps errors to exit codes) would give them."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, FfrtmpError):
        return result.exception.exit_code, result.output + str(result.exception)
    return result.exit_code, result.output


def test_create_list_and_revoke_an_api_key(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "master.db").close()
    code, out = run("keys", "api", "create", "--role", "submit", "--tenant", "acme", "--data-dir", str(tmp_path),
                    "--json")
    assert code == 0
    created = json.loads(out)
    store = SqliteStore(tmp_path / "master.db")
    try:
        assert Authority(store, None).authenticate(created["key"]).tenant == "acme"
    finally:
        store.close()
    code, out = run("keys", "api", "list", "--data-dir", str(tmp_path), "--json")
    listed = json.loads(out)
    assert [(k["id"], k["role"], k["tenant"], k["revoked_at"]) for k in listed] == [
        (created["id"], "submit", "acme", None)]
    assert created["key"] not in out, "a key is shown once, at creation"
    assert run("keys", "api", "revoke", created["id"], "--data-dir", str(tmp_path))[0] == 0
    assert json.loads(run("keys", "api", "list", "--data-dir", str(tmp_path), "--json")[1])[0]["revoked_at"]
    assert run("keys", "api", "revoke", created["id"], "--data-dir", str(tmp_path))[0] == 6


def test_bad_role_tenant_or_missing_database_name_the_problem(tmp_path: Path) -> None:
    code, _ = run("keys", "api", "list", "--data-dir", str(tmp_path))
    assert code == 2, "no database there"
    SqliteStore(tmp_path / "master.db").close()
    assert run("keys", "api", "create", "--role", "root", "--data-dir", str(tmp_path))[0] == 2
    assert run("keys", "api", "create", "--role", "read", "--tenant", "a b", "--data-dir", str(tmp_path))[0] == 2


def test_quotas_are_set_and_listed(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "master.db").close()
    assert run("keys", "quota", "set", "acme", "--max-pending", "10", "--data-dir", str(tmp_path))[0] == 0
    code, out = run("keys", "quota", "list", "--data-dir", str(tmp_path), "--json")
    assert json.loads(out) == {"acme": {"max_pending": 10, "max_running": None, "max_bytes": None}}
    assert run("keys", "quota", "set", "acme", "--max-running", "-1", "--data-dir", str(tmp_path))[0] == 2


def test_a_store_from_an_older_version_is_not_migrated_under_its_running_master(tmp_path: Path) -> None:
    """Only a master migrates: `keys` beside an older master that still runs must not change its schema."""
    import sqlite3

    import sqlite_utils

    from ffrtmp.master.store.schema import MIGRATIONS

    path = tmp_path / "master.db"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m005_attempts_and_history_by_seq")
    conn.close()
    code, out = run("keys", "api", "list", "--data-dir", str(tmp_path))
    assert code == 2 and "older ffrtmp" in out and "m005_attempts_and_history_by_seq" in out
    conn = sqlite3.connect(path)
    applied = {row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations")}
    conn.close()
    assert "m005_attempts_and_history_by_seq" not in applied, "the store was left as it was"
    SqliteStore(path).close()  # the new master migrates it
    assert run("keys", "api", "list", "--data-dir", str(tmp_path))[0] == 0


def test_the_first_key_can_be_made_before_the_masters_first_start(tmp_path: Path) -> None:
    """So a master can start secured (and listen beyond loopback) without a protected-mode round trip."""
    import stat

    code, out = run("keys", "api", "create", "--role", "admin", "--data-dir", str(tmp_path / "new"), "--json")
    assert code == 0, out
    assert stat.S_IMODE((tmp_path / "new" / "master.db").stat().st_mode) == 0o600
    assert [k["role"] for k in json.loads(run("keys", "api", "list", "--data-dir", str(tmp_path / "new"),
                                              "--json")[1])] == ["admin"]


def test_worker_keys_name_their_tenant_and_nodes(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "master.db").close()
    every = json.loads(run("keys", "api", "create", "--role", "worker", "--data-dir", str(tmp_path), "--json")[1])
    scoped = json.loads(run("keys", "api", "create", "--role", "worker", "--tenant", "acme", "--node", "gpu-*",
                            "--data-dir", str(tmp_path), "--json")[1])
    assert (every["tenant"], every["node"]) == ("*", None)
    assert (scoped["tenant"], scoped["node"]) == ("acme", "gpu-*")
    code, out = run("keys", "api", "list", "--data-dir", str(tmp_path))
    assert code == 0 and "gpu-*" in out
    assert run("keys", "api", "create", "--role", "worker", "--node", "bad name*", "--data-dir", str(tmp_path))[0] == 2
    assert run("keys", "api", "create", "--role", "read", "--node", "box", "--data-dir", str(tmp_path))[0] == 2


def test_quota_set_grants_queues_and_priorities(tmp_path: Path) -> None:
    from ffrtmp.master.tenants import allowed_lanes

    SqliteStore(tmp_path / "master.db").close()
    code, out = run("keys", "quota", "set", "acme", "--queues", "live,default", "--priorities", "high,medium",
                    "--data-dir", str(tmp_path))
    assert code == 0 and "queues live,default" in out
    assert run("keys", "quota", "set", "acme", "--queues", "urgent", "--data-dir", str(tmp_path))[0] == 2
    listed = json.loads(run("keys", "quota", "list", "--data-dir", str(tmp_path), "--json")[1])
    assert listed == {"acme": {"max_pending": None, "max_running": None, "max_bytes": None,
                               "queues": ["live", "default"], "priorities": ["high", "medium"]}}
    store = SqliteStore(tmp_path / "master.db")
    try:
        lanes = allowed_lanes(store)
        assert lanes is not None and lanes["acme"] == (frozenset({"live", "default"}), frozenset({"high", "medium"}))
    finally:
        store.close()


def test_db_takes_a_file_path_or_a_postgres_url(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "ffrtmp.db"
    assert run("keys", "api", "create", "--role", "read", "--db", str(db))[0] == 0, "--db makes the first store"
    code, out = run("keys", "api", "list", "--db", str(db), "--json")
    assert code == 0 and [k["role"] for k in json.loads(out)] == ["read"]
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    code, out = run("keys", "api", "list", "--db", str(garbage))
    assert code == 2 and "is not an SQLite database" in out, "one line naming the file, no traceback"
    try:
        import ffrtmp.master.store.postgres  # noqa: F401
    except ImportError:
        code, out = run("keys", "api", "list", "--db", "postgresql://postgres@127.0.0.1/ffrtmp")
        assert code == 2
        assert out.endswith("db: postgresql://… needs the PostgreSQL backend: pip install 'ffrtmp[postgres]'")


def test_master_db_takes_a_postgres_url(tmp_path: Path) -> None:
    try:
        import ffrtmp.master.store.postgres  # noqa: F401
    except ImportError:
        code, out = run("master", "--data-dir", str(tmp_path), "--port", "0", "--no-metrics", "--db",
                        "postgres://postgres@127.0.0.1/ffrtmp")
        assert code == 2
        assert out.endswith("db: postgres://… needs the PostgreSQL backend: pip install 'ffrtmp[postgres]'")


def test_a_generated_key_that_reads_like_markup_is_printed_as_it_is(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Z85 has "[", "/" and "]": about one key in a few hundred holds a "[/…]" that rich took for a closing tag,
    and `keys generate` failed with exit 1 (seen once in CI)."""
    import zmq

    public, secret = zmq.curve_keypair()
    bracketed = b"ab[/cd]" + public[7:]
    monkeypatch.setattr(zmq, "curve_keypair", lambda: (bracketed, secret))
    code, out = run("keys", "generate", "--name", "prod", "--out", str(tmp_path))
    assert code == 0, out
    assert f"public key  {bracketed.decode()}" in out
