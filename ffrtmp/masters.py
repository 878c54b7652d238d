"""Several master addresses, and which one leads: what `--master a,b,c` (and FFRTMP_MASTER) means.

Addresses are tried in order. A standby answers "not the leader" with the leader's address (status
NOT_LEADER): go there. One that does not answer, or refuses the connection, is passed over for the next.
Clients use this through `ffrtmp.client.Client`; anything else that talks to masters (a worker) can too.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ffrtmp.errors import InvalidInput, error_from_status
from ffrtmp.protocol import NOT_LEADER

REFUSAL_PROBE_TIMEOUT = 0.2
"""A refused connection comes back within a round trip; a partitioned host is left to the request's timeout."""
ELECTION_PAUSE = 0.25
"""A standby said no master leads right now (an election is under way): ask again after this long."""
SWITCH_PAUSE = 0.1
"""Before trying the next master after one refused the connection (none may be up yet: no busy loop)."""
MIN_TRY = 1.0
"""With several masters, each is given at least this long (or the whole timeout over their number) to answer."""


def parse_address(text: str, field: str = "master") -> str:
    """`tcp://HOST:PORT` (or `HOST:PORT`, taken as tcp); other ZeroMQ schemes (ipc://, inproc://) as given."""
    text = text.strip()
    if not text:
        raise InvalidInput(field, "an empty address (expected tcp://HOST:PORT)")
    if "://" not in text:
        text = f"tcp://{text}"
    parts = urlsplit(text)
    if parts.scheme != "tcp":
        return text
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or not 0 < port < 65536 or parts.path or parts.query:
        raise InvalidInput(field, f"{text!r} is not an address (expected tcp://HOST:PORT)")
    return text


def parse_masters(text: str, field: str = "master") -> list[str]:
    """A comma-separated list of master addresses, in the order given, each once."""
    addresses: list[str] = []
    for part in text.split(","):
        if part.strip():
            address = parse_address(part, field)
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise InvalidInput(field, f"{text!r} names no master (expected tcp://HOST:PORT[,tcp://HOST:PORT…])")
    return addresses


def leader_named(body: Mapping[str, Any] | None) -> str | None:
    """The leader's address in a NOT_LEADER answer (None while no master leads, or when it names none)."""
    leader = body.get("leader") if isinstance(body, Mapping) else None
    if not isinstance(leader, str):
        return None
    try:
        return parse_address(leader, "leader")
    except InvalidInput:
        return None


def not_leader(message_body: Mapping[str, Any]) -> bool:
    """True for a REPLY or REFUSED body that says "not the leader"."""
    return message_body.get("status") == NOT_LEADER


def refuses_connections(address: str, timeout: float = REFUSAL_PROBE_TIMEOUT) -> bool:
    """True only when a TCP connection to `address` is refused: no master listens there now."""
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.scheme != "tcp" or not host or not port:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # unreachable or silent: only the request's own timeout can tell


@dataclass
class MasterList:
    """The masters to try, and which one is current (the leader, once one said where it is)."""

    addresses: list[str]
    current: int = 0
    learned: list[str] = field(default_factory=list)
    """Leaders named by a standby that the list did not hold (tried like the others from then on)."""

    @classmethod
    def parse(cls, text: str, field: str = "master") -> MasterList:
        return cls(parse_masters(text, field))

    @property
    def address(self) -> str:
        return self.addresses[self.current]

    def __len__(self) -> int:
        return len(self.addresses)

    def follow(self, leader: str | None) -> str:
        """Go to the leader a standby named (kept in the list from then on); without one, to the next."""
        if leader is None:
            return self.next()
        if leader not in self.addresses:
            self.addresses.append(leader)
            self.learned.append(leader)
        self.current = self.addresses.index(leader)
        return self.address

    def next(self) -> str:
        self.current = (self.current + 1) % len(self.addresses)
        return self.address

    def __str__(self) -> str:
        return ",".join(self.addresses)


class NotLeaderReply(Exception):
    """A standby answered instead of the leader; `leader` is where to go (None while none leads)."""

    def __init__(self, leader: str | None, text: str) -> None:
        super().__init__(text)
        self.leader = leader


def reply_error(body: dict[str, Any]) -> Exception:
    """What a non-200 REPLY stands for: a redirect to the leader, or the error it names."""
    if body["status"] == NOT_LEADER:
        return NotLeaderReply(leader_named(body.get("body")), str(body.get("error", "not the leader")))
    return error_from_status(body["status"], body.get("error", "request failed"))
