"""`ffrtmp keys quota set TENANT --max-bytes SIZE`: a tenant's cap on stored files (docs/files.md)."""

from __future__ import annotations

import json
from pathlib import Path

from ffrtmp.master.store import SqliteStore
from tests.test_cli_keys import run


def test_max_bytes_is_set_listed_and_cleared(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "master.db").close()
    code, out = run("keys", "quota", "set", "acme", "--max-bytes", "50G", "--data-dir", str(tmp_path))
    assert code == 0 and "max bytes 50G" in out
    listed = json.loads(run("keys", "quota", "list", "--data-dir", str(tmp_path), "--json")[1])
    assert listed["acme"]["max_bytes"] == 50 * 2**30
    assert run("keys", "quota", "set", "acme", "--max-bytes", "lots", "--data-dir", str(tmp_path))[0] == 2
    assert run("keys", "quota", "set", "acme", "--data-dir", str(tmp_path))[0] == 0  # left out: no limit
    listed = json.loads(run("keys", "quota", "list", "--data-dir", str(tmp_path), "--json")[1])
    assert listed["acme"]["max_bytes"] is None
