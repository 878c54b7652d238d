"""Protected mode, like Redis's: a master nobody has secured listens on loopback only.

With no API key (`--api-key` or one ever made with `keys api create`) and no `--allow-keys`, anyone who
can reach the port is an admin, so the default bind is 127.0.0.1 and another address needs `--insecure`.
Once a master has either, the default bind is every interface (0.0.0.0).
"""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.postgres_url import postgres_had_api_keys, postgres_url_of

AUTO = "auto"
"""`--bind`'s default: loopback in protected mode, every interface otherwise."""
LOOPBACK = "127.0.0.1"
ANY = "0.0.0.0"
HOW_TO_OPEN = ("to accept other machines, create an API key on this machine (`ffrtmp keys api create --role "
               "admin`) or pass --allow-keys DIR, then restart; or run it open with --bind ADDRESS --insecure")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name (or '*'): it may resolve to anything


def had_api_keys(db_path: Path) -> bool:
    """True when the master's database holds any API key, revoked ones included (read-only: a peek)."""
    if postgres_url_of(db_path) is not None:
        return postgres_had_api_keys(db_path)
    if not db_path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # a store from before API keys (no table): it has none


def resolve_bind(bind: str, *, secured: bool, insecure: bool) -> tuple[str, bool]:
    """The address to bind and whether protected mode chose it; InvalidInput for an open non-loopback bind.

    `secured`: the master has an API key or --allow-keys.
    """
    if bind in (AUTO, ""):
        return (ANY, False) if secured else (LOOPBACK, True)
    if not secured and not insecure and not is_loopback(bind):
        raise InvalidInput("bind", f"{bind} would let anyone who reaches it be an admin of this master (no API key "
                           f"and no --allow-keys): {HOW_TO_OPEN}")
    return bind, False
