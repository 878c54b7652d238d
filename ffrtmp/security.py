"""CURVE key pairs as ZeroMQ certificate files, and API-key checks.

Certificates use the ZeroMQ format (`NAME.key` public, `NAME.key_secret` secret, mode 0600), so
`zmq.auth.load_certificate` and other ZeroMQ tools read them. Secret keys never leave this module's callers'
sockets: they are not sent, printed or logged.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput

_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
MASTER_CERT_NAME = "master"
CLIENT_CERT_NAME = "client"


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: bytes


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def private_database(path: Path) -> None:
    """Make the master's database and its WAL and SHM files 0600 (creating an empty database if none).

    It holds every job spec (stream keys, URL passwords), logs and key hashes. SQLite creates the WAL and
    SHM files with the database file's mode, so a 0600 database keeps them private too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Never open (and close) a database file this process may have open in SQLite already: closing any
        # descriptor of a file drops every POSIX lock the process holds on it, so another process would take
        # itself for the last one and delete the WAL under us ("disk I/O error"). A master that wins a new
        # term opens a second store on the file its first one holds.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for one in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if one.exists():
            os.chmod(one, 0o600)


def write_certificates(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a new pair NAME.key (public, 0644) and NAME.key_secret (0600); returns both paths."""
    public, secret = zmq.curve_keypair()
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    public_path, secret_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    head = f"#   ****  Generated on {stamp} by ffrtmp  ****\n"
    _write(public_path, head + "#   ZeroMQ CURVE Public Certificate\n\nmetadata\ncurve\n"
           f'    public-key = "{public.decode()}"\n', 0o644)
    _write(secret_path, head + "#   ZeroMQ CURVE **Secret** Certificate\n"
           "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\nmetadata\ncurve\n"
           f'    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n', 0o600)
    return public_path, secret_path


def load_keypair(secret_path: Path) -> KeyPair:
    """Load a secret certificate file (it holds both halves)."""
    try:
        public, secret = zmq.auth.load_certificate(secret_path)
    except (OSError, ValueError) as exc:
        raise InvalidInput("key", f"cannot read the CURVE certificate {secret_path}: {exc}") from None
    if not secret:
        raise InvalidInput("key", f"{secret_path} is a public certificate; the secret one (.key_secret) is needed")
    return KeyPair(public, secret)


def load_public_key(value: str | Path) -> bytes:
    """A public key given as 40 Z85 characters or as the path of a certificate file."""
    text = str(value).strip()
    if _Z85_KEY.match(text) and not Path(text).exists():
        return text.encode()
    path = Path(text).expanduser()
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput("master-key", f"{text!r} is neither a Z85 public key nor a readable certificate: {exc}"
                           ) from None
    return public


def master_keypair(data_dir: Path, cert: Path | None = None, key: Path | None = None) -> KeyPair:
    """The master's key pair: from --key (and --cert), else the data dir's, made on first start.

    The public certificate is always (re)written to the data dir so that clients and workers on this
    machine find it without configuration.
    """
    if key is not None:
        pair = load_keypair(key)
        if cert is not None and load_public_key(cert) != pair.public:
            raise InvalidInput("cert", f"{cert} does not hold the public half of {key}")
    else:
        secret_path = data_dir / f"{MASTER_CERT_NAME}.key_secret"
        if not secret_path.exists():
            write_certificates(data_dir, MASTER_CERT_NAME)
        pair = load_keypair(secret_path)
    public_path = data_dir / f"{MASTER_CERT_NAME}.key"
    try:
        current = load_public_key(public_path) if public_path.exists() else None
    except InvalidInput:
        current = None
    if current != pair.public:
        _write(public_path, f'#   ZeroMQ CURVE Public Certificate (ffrtmp master)\n\nmetadata\ncurve\n'
               f'    public-key = "{pair.public.decode()}"\n', 0o644)
    return pair


def default_master_key_path() -> Path:
    return defaults.data_dir() / f"{MASTER_CERT_NAME}.key"


def client_keypair(secret_path: Path | None = None) -> KeyPair:
    """This user's own CURVE pair (made once in the config dir), or the one at --client-key."""
    if secret_path is not None:
        return load_keypair(secret_path)
    path = defaults.config_dir() / f"{CLIENT_CERT_NAME}.key_secret"
    if not path.exists():
        write_certificates(path.parent, CLIENT_CERT_NAME)
    return load_keypair(path)
