"""The HTTP API's TLS: the operator's PEM pair (`--tls-cert`/`--tls-key`), or a self-signed one made once in the
data dir, whose SHA-256 fingerprint the master logs so clients can pin it or pass it to `curl --cacert`."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from ffrtmp.errors import InvalidInput

CERT_FILE = "api-cert.pem"
KEY_FILE = "api-key.pem"
VALID_DAYS = 3650
"""A self-signed certificate is trusted by pinning, not by expiry: ten years spares a surprise outage."""


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER form, as `openssl x509 -fingerprint -sha256` prints it."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def self_signed(data_dir: Path) -> tuple[Path, Path, bool]:
    """The data dir's certificate and key, made on first use; (cert, key, made now)."""
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path, False
    cert_pem, key_pem = _generate(socket.gethostname())
    # The key is created 0600 from the start: it is never readable by others, not even for a moment.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path, True


def _generate(hostname: str) -> tuple[bytes, bytes]:
    # cryptography: the one well-kept library that writes X.509 in pure API calls (the stdlib cannot).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname or "localhost")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the pair; InvalidInput naming the option when a file is unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for option, path in (("tls-cert", cert), ("tls-key", key)):
        if not path.is_file():
            raise InvalidInput(option, f"{path} is not a readable file")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput("tls-cert", f"{cert} and {key} are not a PEM certificate and its key: {exc}") from None
    return context
