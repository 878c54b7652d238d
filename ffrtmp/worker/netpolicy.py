"""Where a job's URLs may point: public addresses only, unless the worker allows its private networks.

A submitter must not use a worker to reach what only the worker can reach: its loopback services, the
cloud metadata endpoint (169.254.169.254), the LAN. The host of every URL input and RTMP output is resolved
and every address it resolves to is checked, so a name with one public and one private address is refused
too. `--allow-private-network` turns the check off (a LAN camera, a local nginx-rtmp).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from ffrtmp.errors import FfrtmpError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkRefused(FfrtmpError):
    """A URL the worker will not open for a job; the message names the field and says why."""


class HostUnresolved(NetworkRefused):
    """The host could not be resolved now: maybe a passing DNS problem, so the attempt may be retried."""


def address_problem(address: IPAddress) -> str | None:
    """Why a job may not reach `address` (loopback, private, link-local, ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for name, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
                       ("private", address.is_private)):
        if flag:
            return name
    if not address.is_global:
        return "not public"  # shared (100.64/10), reserved, documentation ranges
    return None


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port or 0, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_destination(field: str, url: str, *, allow_private: bool) -> None:
    """Raise NetworkRefused unless every address of the URL's host is public (or private ones are allowed)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise NetworkRefused(f"{field}: the URL names no host")
    try:
        addresses = resolve(host, parts.port)
    except (OSError, UnicodeError, ValueError):
        raise HostUnresolved(f"{field}: the host {host!r} could not be resolved on this worker") from None
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise NetworkRefused(f"{field}: {host!r} resolves to a {problem} address ({address}); this worker "
                                 "reaches only public hosts for jobs (start it with --allow-private-network "
                                 "to allow its local networks)")
