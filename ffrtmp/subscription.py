"""Following a job's log (or waiting for its end) across master restarts and failovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from ffrtmp.errors import MasterUnreachable, error_from_status
from ffrtmp.masters import ELECTION_PAUSE, leader_named
from ffrtmp.protocol import NOT_LEADER, Kind, Message

RESUBSCRIBE_AFTER = 3.0
"""A follow that hears nothing this long (the master sends a keep-alive every second) is sent again."""
RESTART_PAUSE = 0.25
"""After the master said it restarts: the first re-subscription waits this long (the new one is starting)."""


class MasterLink(Protocol):
    """What a subscription needs of its client: requests out, messages in, and a move to another master."""

    @property
    def timeout(self) -> float:
        """Seconds with no word from the master at all before giving up."""
        ...

    @property
    def master(self) -> str:
        """The master talked to now."""
        ...

    @property
    def handshake_failed(self) -> bool:
        """The CURVE handshake failed: waiting longer will not help."""
        ...

    def send_request(self, op: str, args: dict[str, Any]) -> str:
        """Send one request to the current master; returns its request id."""
        ...

    def next_message(self, rids: set[str] | str, left: float, timeout: float | None = None) -> Message:
        """The next PARTIAL or REPLY to `rids`; MasterUnreachable after `left` seconds without one."""
        ...

    def explain_silence(self, timeout: float) -> str:
        """Why the master may have said nothing for `timeout` seconds, and what to check."""
        ...

    def try_next_master(self) -> None:
        """Talk to the next master of the list (none when only one is listed)."""
        ...

    def follow_leader(self, leader: str) -> None:
        """Talk to `leader` (a standby named it) from now on."""
        ...


class Subscription:
    """One `logs.follow` that survives a master restart.

    The follow state lives in the master's memory, so when its keep-alives stop (or it says it is
    restarting) the request is sent again, from the last (attempt, seq) seen; lines seen already are
    skipped. Only `timeout` seconds with no word from the master at all give up (MasterUnreachable).
    """

    def __init__(self, link: MasterLink, args: dict[str, Any]) -> None:
        self.link = link
        self.args = args
        self.last: tuple[int, int] | None = None
        self.rid = link.send_request("logs.follow", args)
        self.heard = time.monotonic()
        self.resend_at = self.heard + RESUBSCRIBE_AFTER
        self.resubscribed = 0

    def next(self, until: float | None = None) -> Message | None:
        """The next PARTIAL (only lines not seen yet) or the final REPLY; None once `until` has passed."""
        while True:
            now = time.monotonic()
            if until is not None and now >= until:
                return None
            give_up = self.heard + self.link.timeout
            stop = min(give_up, self.resend_at, until if until is not None else give_up)
            try:  # always look at least briefly: what arrived while the caller was busy counts
                message = self.link.next_message(self.rid, max(0.01, stop - now), self.link.timeout)
            except MasterUnreachable:
                if self.link.handshake_failed:
                    raise
                now = time.monotonic()
                if until is not None and until <= min(now, give_up):
                    return None
                if now >= give_up:
                    raise MasterUnreachable(f"no keep-alive from the master for {self.link.timeout:g}s: "
                                            + self.link.explain_silence(self.link.timeout)) from None
                if now >= self.resend_at:
                    self.link.try_next_master()  # this one is silent
                    self._resubscribe()
                continue
            if message.kind is Kind.REPLY and message.body["status"] == NOT_LEADER:
                leader = leader_named(message.body.get("body"))
                self.heard = time.monotonic()  # a master answered: only where to go is wrong
                if leader is not None and leader != self.link.master:
                    self.link.follow_leader(leader)
                    self._resubscribe()
                else:
                    self.resend_at = self.heard + ELECTION_PAUSE
                continue
            if (message.kind is Kind.REPLY and message.body["status"] == 503
                    and "restarting" in str(message.body.get("error"))):
                self.resend_at = time.monotonic() + RESTART_PAUSE  # it stops now: follow again once it is back
                continue
            self.heard = time.monotonic()
            self.resend_at = self.heard + RESUBSCRIBE_AFTER
            if message.kind is Kind.PARTIAL and isinstance(message.body["body"], dict):
                lines = message.body["body"].get("lines", [])
                if lines:
                    message.body["body"]["lines"] = self._unseen(lines)
            return message

    def _unseen(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for line in lines:
            place = (line.get("attempt"), line.get("seq"))
            if not (isinstance(place[0], int) and isinstance(place[1], int)):
                continue
            key = (place[0], place[1])
            if self.last is None or key > self.last:
                fresh.append(line)
                self.last = key
        return fresh

    def _resubscribe(self) -> None:
        args = {**self.args, "replaces": self.rid}
        if self.last is not None:
            args = {**{k: v for k, v in args.items() if k != "tail"}, "after": list(self.last)}
        self.rid = self.link.send_request("logs.follow", args)
        self.resubscribed += 1
        self.resend_at = time.monotonic() + RESUBSCRIBE_AFTER


class LogStream:
    """Lines of a followed job, in order; `job` is set once the master says the job has ended."""

    def __init__(self, link: MasterLink, args: dict[str, Any]) -> None:
        self.subscription = Subscription(link, args)
        self.job: dict[str, Any] | None = None
        self.status: str | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while self.job is None:
            message = self.subscription.next()
            assert message is not None
            if message.kind is Kind.REPLY:
                if message.body["status"] != 200:
                    raise error_from_status(message.body["status"], message.body.get("error", "request failed"))
                self.job = message.body.get("body") or {}
                return
            body = message.body["body"]
            if isinstance(body, dict):
                self.status = body.get("status", self.status)
                yield from body.get("lines", [])
