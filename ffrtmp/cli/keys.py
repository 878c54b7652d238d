"""`ffrtmp keys generate`: CURVE key pairs as ZeroMQ certificate files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ffrtmp.cli.common import console, print_json
from ffrtmp.jobspec import check_name
from ffrtmp.master.store import Store, open_store
from ffrtmp.units import parse_size, size_text

app = typer.Typer(help="CURVE key pairs for masters, workers and clients.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("generate")
def generate(
    name: str = typer.Option("master", "--name", help="File name stem: NAME.key and NAME.key_secret."),
    out: Path = typer.Option(Path("."), "--out", help="Directory to write to."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing pair."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Write a new key pair: NAME.key (public: give it out) and NAME.key_secret (mode 0600: keep it)."""
    from ffrtmp.errors import InvalidInput
    from ffrtmp.security import load_keypair, write_certificates

    check_name("name", name)
    if (out / f"{name}.key_secret").exists() and not force:
        raise InvalidInput("name", f"{out / (name + '.key_secret')} exists; pass --force to replace it")
    public_path, secret_path = write_certificates(out, name)
    public = load_keypair(secret_path).public.decode()
    if json_output:
        print_json({"public_key": public, "public": str(public_path), "secret": str(secret_path)})
        return
    # markup off: a Z85 key may hold "[/…]", which rich would read as a closing tag (and fail)
    console.print(f"public key  {public}\npublic      {public_path}\nsecret      {secret_path} (mode 0600)",
                  highlight=False, markup=False)


api = typer.Typer(help="API keys with roles and tenants, kept (hashed) in the master's database.",
                  no_args_is_help=True, rich_markup_mode=None)
quota = typer.Typer(help="Per-tenant quotas: pending and running jobs.", no_args_is_help=True,
                    rich_markup_mode=None)
app.add_typer(api, name="api")
app.add_typer(quota, name="quota")

DataDir = typer.Option(None, "--data-dir", envvar="FFRTMP_DATA_DIR", show_default=False,
                       help="The master's data dir (default ~/.local/share/ffrtmp); run this on the master's machine.")
DbPath = typer.Option(None, "--db", help="The master's database: an SQLite file or a postgresql:// URL "
                      "(default DATA_DIR/master.db).")


def _store(data_dir: Path | None, db: str | None, create: bool = False) -> Store:
    """The master's store. With `create`, a missing SQLite file is made (no master runs on it yet), so the
    first key can exist before the master's first start, which then listens beyond loopback (protected mode).
    An existing store is never migrated: the master may be running, and only it may change the schema."""
    from ffrtmp import defaults
    from ffrtmp.errors import InvalidInput
    from ffrtmp.master.store.opening import is_url

    if db is not None and is_url(db):
        return open_store(db, 0, migrate=False)
    path = Path(db) if db else (data_dir or defaults.data_dir()) / "master.db"
    if not path.exists():
        if not create:
            raise InvalidInput("db", f"{path} does not exist: run this where the master keeps its data "
                               "(--data-dir/--db)")
        return open_store(path, 0)  # made private from its first byte
    return open_store(path, 0, migrate=False)


@api.command("create")
def api_create(
    role: str = typer.Option(..., "--role", help="admin, submit, read or worker."),
    tenant: str = typer.Option(None, "--tenant", show_default=False,
                               help="The tenant whose jobs this key sees and owns (default: default); for a "
                                    "worker key, the only tenant whose jobs it runs (default: every tenant)."),
    note: str = typer.Option("", "--note", help="What the key is for."),
    node: str = typer.Option(None, "--node", help="Worker keys: the only node name it may register as, or "
                             "PREFIX* for names starting with PREFIX (default: any)."),
    data_dir: Path = DataDir,
    db: str = DbPath,
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Issue a key; it is printed once and stored only as a hash. The master checks it on every request."""
    from ffrtmp.master.auth import create_key, list_keys

    store = _store(data_dir, db, create=True)
    try:
        key_id, token = create_key(store, role, tenant, note, node)
        tenant = next(k["tenant"] for k in list_keys(store) if k["id"] == key_id)
    finally:
        store.close()
    if json_output:
        print_json({"id": key_id, "key": token, "role": role, "tenant": tenant, "node": node})
    else:
        scope = f", node {node}" if node else ""
        console.print(f"{token}\n(id {key_id}, role {role}, tenant {tenant}{scope}: keep the key, it is not shown "
                      "again)", highlight=False)


@api.command("list")
def api_list(data_dir: Path = DataDir, db: str = DbPath, json_output: bool = typer.Option(False, "--json")) -> None:
    """The keys, without their secrets."""
    from rich.table import Table

    from ffrtmp.master.auth import list_keys
    from ffrtmp.master.serialize import iso

    store = _store(data_dir, db)
    try:
        keys = [{**k, "created_at": iso(k["created_at"]), "revoked_at": iso(k["revoked_at"])} for k in list_keys(store)]
    finally:
        store.close()
    if json_output:
        print_json(keys)
        return
    table = Table(header_style="bold")
    for column in ("ID", "ROLE", "TENANT", "NODE", "CREATED", "REVOKED", "NOTE"):
        table.add_column(column)
    for key in keys:
        table.add_row(*("-" if key[column] is None else str(key[column])
                        for column in ("id", "role", "tenant", "node", "created_at", "revoked_at", "note")))
    console.print(table)


@api.command("revoke")
def api_revoke(key_id: str = typer.Argument(..., help="The key's id (see `keys api list`)."),
               data_dir: Path = DataDir, db: str = DbPath) -> None:
    """Revoke a key; the master refuses it from its next request on."""
    from ffrtmp.master.auth import revoke_key

    store = _store(data_dir, db)
    try:
        revoke_key(store, key_id)
    finally:
        store.close()
    console.print(f"revoked {key_id}", highlight=False)


@quota.command("set")
def quota_set(
    tenant: str = typer.Argument(...),
    max_pending: int = typer.Option(None, "--max-pending", help="Pending jobs at most (a submit past it: exit 5)."),
    max_running: int = typer.Option(None, "--max-running", help="Jobs running at once at most (others wait)."),
    max_bytes: str = typer.Option(None, "--max-bytes", help="Bytes of stored files at most (e.g. 50G); an upload "
                                  "past it is refused at its start (exit 5)."),
    queues: str = typer.Option(None, "--queues", help="Queues its jobs may use, comma-separated (e.g. "
                               "default,batch). Once any tenant has a list, tenants without one get default,batch."),
    priorities: str = typer.Option(None, "--priorities", help="Priorities its jobs may use, comma-separated (e.g. "
                                   "medium,low). Once any tenant has a list, tenants without one get medium,low."),
    data_dir: Path = DataDir,
    db: str = DbPath,
) -> None:
    """Set a tenant's quotas (leave one out for no limit); the master applies them at once."""
    from ffrtmp.master.auth import set_quota
    from ffrtmp.master.tenants import parse_allowed, set_allowed

    allowed_queues, allowed_priorities = parse_allowed("queues", queues), parse_allowed("priorities", priorities)
    byte_cap = parse_size(max_bytes, field="max-bytes") if max_bytes is not None else None
    store = _store(data_dir, db)
    try:
        set_quota(store, tenant, max_pending, max_running)
        with store.transaction():
            store.set_bytes_quota(tenant, byte_cap)
        set_allowed(store, tenant, allowed_queues, allowed_priorities)
    finally:
        store.close()
    console.print(f"{tenant}: max pending {max_pending if max_pending is not None else 'unlimited'}, "
                  f"max running {max_running if max_running is not None else 'unlimited'}"
                  + (f", max bytes {size_text(byte_cap)}" if byte_cap is not None else "")
                  + (f", queues {','.join(allowed_queues)}" if allowed_queues else "")
                  + (f", priorities {','.join(allowed_priorities)}" if allowed_priorities else ""), highlight=False)


@quota.command("list")
def quota_list(data_dir: Path = DataDir, db: str = DbPath, json_output: bool = typer.Option(False, "--json")) -> None:
    """Tenants with quotas."""
    from ffrtmp.master.auth import quotas
    from ffrtmp.master.tenants import granted_lanes

    store = _store(data_dir, db)
    try:
        found: dict[str, dict[str, Any]] = {name: dict(limits) for name, limits in quotas(store).items()}
        for name, limits in found.items():
            limits["max_bytes"] = store.bytes_quota(name)
        for name, lanes in granted_lanes(store).items():
            found.setdefault(name, {}).update(lanes)  # only tenants with lists get these fields
    finally:
        store.close()
    if json_output:
        print_json(found)
        return
    for name, limits in sorted(found.items()):
        granted = "".join(f", {field} {','.join(limits[field])}" for field in ("queues", "priorities")
                          if field in limits)
        shown_bytes = f", max bytes {size_text(limits['max_bytes'])}" if limits.get("max_bytes") is not None else ""
        console.print(f"{name}: max pending {limits.get('max_pending')}, max running {limits.get('max_running')}"
                      f"{shown_bytes}{granted}", highlight=False)
