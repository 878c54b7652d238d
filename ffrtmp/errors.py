"""One small error hierarchy; each error knows the CLI exit code and the reply status it maps to (docs/protocol.md)."""

from __future__ import annotations


class FfrtmpError(Exception):
    """Base of every error ffrtmp raises on purpose."""

    exit_code = 1
    status = 500


class JobFailed(FfrtmpError):
    """A job the caller waited for failed or was canceled."""

    exit_code = 1


class InvalidInput(FfrtmpError):
    """A request or option is malformed; the message names the field."""

    exit_code = 2
    status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Conflict(FfrtmpError):
    """The request is well formed but the state forbids it (e.g. a duplicate worker name)."""

    exit_code = 2
    status = 409


class MasterUnreachable(FfrtmpError):
    """No answer from the master in time; the message says which address and what to check."""

    exit_code = 3
    status = 503


class NotAuthorized(FfrtmpError):
    """Missing or wrong API key."""

    exit_code = 4
    status = 401


class RateLimited(FfrtmpError):
    """Too many requests; the message says when to retry."""

    exit_code = 5
    status = 429


class StoreUnavailable(FfrtmpError):
    """The master is up but cannot write its store (disk full, read-only): nothing was stored; retry later.

    Exit 5, like a rate limit: a live master refusing for a while, and the message says when to retry.
    """

    exit_code = 5
    status = 507


class NotFound(FfrtmpError):
    """No job or node matches."""

    exit_code = 6
    status = 404


class FileMismatch(FfrtmpError):
    """The bytes of a file transfer are not the file announced (size or SHA-256): nothing was kept."""

    exit_code = 1
    status = 422


class ProtocolError(FfrtmpError):
    """A message could not be decoded or does not fit its kind."""

    exit_code = 2
    status = 400


class ProtocolMismatch(ProtocolError):
    """The peer speaks another protocol version: an install problem, said once and clearly, never retried."""

    def __init__(self, peer: int, ours: int) -> None:
        super().__init__(f"protocol version {peer} is not supported (this side speaks {ours})")
        self.peer = peer
        self.ours = ours

    def sentence(self, peer_role: str, own_role: str) -> str:
        """E.g. 'the master speaks protocol 2, this worker 1: install the same ffrtmp version on both'."""
        return (f"the {peer_role} speaks protocol {self.peer}, this {own_role} {self.ours}: "
                "install the same ffrtmp version on both")


class TransportError(FfrtmpError):
    """A socket could not be set up or used."""

    exit_code = 3
    status = 503


_BY_STATUS: dict[int, type[FfrtmpError]] = {
    400: InvalidInput,
    401: NotAuthorized,
    404: NotFound,
    409: Conflict,
    422: FileMismatch,
    429: RateLimited,
    507: StoreUnavailable,
    503: MasterUnreachable,
}


def error_from_status(status: int, message: str) -> FfrtmpError:
    """Rebuild the error a master reply stands for, on the client side."""
    cls = _BY_STATUS.get(status, FfrtmpError)
    if cls is InvalidInput:
        field, _, problem = message.partition(": ")
        return InvalidInput(field, problem) if problem else InvalidInput("request", message)
    return cls(message)
