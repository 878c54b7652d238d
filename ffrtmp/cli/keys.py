"""`ffrtmp keys generate`: CURVE key pairs as ZeroMQ certificate files."""

from __future__ import annotations

from pathlib import Path

import typer

from ffrtmp.cli.common import console, print_json
from ffrtmp.jobspec import check_name

app = typer.Typer(help="CURVE key pairs for masters, workers and clients.", no_args_is_help=True)


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
    console.print(f"public key  {public}\npublic      {public_path}\nsecret      {secret_path} (mode 0600)",
                  highlight=False)
