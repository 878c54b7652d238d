"""Job logs on the master: a per-job cap, live followers, and retention by age and total size.

Lines arrive from workers in batches and are stored inside the coordinator's transaction (batched
commits). A client that follows a job gets the stored lines, then every new batch as a PARTIAL as soon as
it is stored, a keep-alive PARTIAL every second, and one final REPLY when the job ends (the MDP/0.2 shape).
Old logs are purged a little at a time from the maintenance tick, so dispatch never waits on a big delete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ffrtmp import defaults
from ffrtmp.master.store import TERMINAL, Store
from ffrtmp.protocol import Kind, encode

log = logging.getLogger("ffrtmp.master")

Line = tuple[int, float, str, str]
Queue = Callable[[bytes, bytes, Callable[[], None] | None], None]

PARTIAL_LINES = 500
"""Lines per PARTIAL frame when a follower catches up on stored lines."""
KEEPALIVE = 1.0
"""A follower hears from the master at least this often, so it can tell a quiet job from a dead master."""
PURGE_BYTES_PER_PASS = 2 * 1024 * 1024
"""Log bytes one maintenance pass deletes at most (a pass runs every tick while there is work)."""


@dataclass(frozen=True)
class LogPolicy:
    max_job_bytes: int = defaults.LOG_MAX_JOB_BYTES
    retention: float = defaults.LOG_RETENTION
    max_total_bytes: int = defaults.LOG_MAX_TOTAL_BYTES


@dataclass
class Follower:
    route: bytes
    rid: str
    attempt: int | None
    """Only this attempt's lines; None: every attempt from `min_attempt` on."""
    min_attempt: int = 0
    lines: bool = True
    """False: the follower only waits for the end (keep-alives and the final reply, no lines)."""
    sent: set[tuple[int, int]] = field(default_factory=set)

    def wants(self, attempt: int) -> bool:
        if not self.lines:
            return False
        return attempt == self.attempt if self.attempt is not None else attempt >= self.min_attempt


class Logbook:
    def __init__(self, store: Store, policy: LogPolicy, queue: Queue) -> None:
        self.store = store
        self.policy = policy
        self.queue = queue
        self.followers: dict[str, list[Follower]] = {}
        self.total_bytes = store.total_log_bytes()
        self.last_keepalive = 0.0
        self.truncated = 0

    # ---- writing ----------------------------------------------------------------------------------

    def append(self, job_id: str, attempt: int, lines: list[Line]) -> None:
        """Store what fits under the job's cap; past it, one marker line says the log was cut."""
        stored, dropped_before = self.store.log_size(job_id)
        dropped = dropped_before
        room = self.policy.max_job_bytes - stored
        kept: list[Line] = []
        for line in lines:
            size = len(line[3]) + 1
            if dropped == 0 and size <= room:
                kept.append(line)
                room -= size
                continue
            if dropped == 0:
                mark = f"[ffrtmp: log truncated at {self.policy.max_job_bytes // 1024} KiB; later lines are dropped]"
                kept.append((line[0], line[1], "worker", mark))
                self.truncated += 1
            dropped += 1
        cut = dropped - dropped_before
        if kept or cut:
            self.store.append_logs(job_id, attempt, kept, dropped=cut)
            self.total_bytes += sum(len(line[3]) + 1 for line in kept)
        if kept:
            self._push(job_id, attempt, kept)

    # ---- following --------------------------------------------------------------------------------

    def follow(self, route: bytes, rid: str, job: dict[str, Any], attempt: int | None, tail: int | None,
               every_attempt: bool, lines: bool = True) -> None:
        """Send what is stored, then either end (a finished job) or stream what comes.

        With `lines` False this is a wait: no lines, just keep-alives and the final reply (`Client.wait`).
        """
        latest = job["attempts"]
        follower = Follower(route, rid, attempt, min_attempt=0 if every_attempt else latest, lines=lines)
        if not lines:
            stored = []
        elif attempt is not None:
            stored = self.store.job_logs(job["id"], attempt=attempt, tail=tail)
        else:
            stored = self.store.job_logs(job["id"], tail=tail, min_attempt=follower.min_attempt)
        for start in range(0, len(stored), PARTIAL_LINES):
            self._send_partial(follower, job["id"], stored[start:start + PARTIAL_LINES], job["status"])
        if job["status"] in TERMINAL:
            self._end(follower, job)
            return
        self.followers.setdefault(job["id"], []).append(follower)

    def _push(self, job_id: str, attempt: int, lines: list[Line]) -> None:
        rows = [{"attempt": attempt, "seq": seq, "at": at, "stream": stream, "line": text}
                for seq, at, stream, text in lines]
        for follower in self.followers.get(job_id, []):
            if follower.wants(attempt):
                self._send_partial(follower, job_id, rows, None)

    def _send_partial(self, follower: Follower, job_id: str, rows: list[dict[str, Any]], status: str | None) -> None:
        fresh = [row for row in rows if (row["attempt"], row["seq"]) not in follower.sent]
        follower.sent.update((row["attempt"], row["seq"]) for row in fresh)
        body: dict[str, Any] = {"lines": fresh}
        if status is not None:
            body["status"] = status
        self.queue(follower.route, encode(Kind.PARTIAL, {"rid": follower.rid, "body": body}),
                   lambda: self._drop(job_id, follower))

    def _drop(self, job_id: str, follower: Follower) -> None:
        """The follower's connection is gone."""
        followers = self.followers.get(job_id, [])
        if follower in followers:
            followers.remove(follower)
        if not followers:
            self.followers.pop(job_id, None)

    def job_ended(self, job: dict[str, Any]) -> None:
        for follower in self.followers.pop(job["id"], []):
            self._end(follower, job)

    def _end(self, follower: Follower, job: dict[str, Any]) -> None:
        body = {"id": job["id"], "status": job["status"], "error": job["error"], "attempts": job["attempts"]}
        self.queue(follower.route, encode(Kind.REPLY, {"rid": follower.rid, "status": 200, "body": body}), None)

    def keepalive(self, now: float, status_of: Callable[[str], str | None]) -> None:
        if now - self.last_keepalive < KEEPALIVE or not self.followers:
            return
        self.last_keepalive = now
        for job_id, followers in list(self.followers.items()):
            status = status_of(job_id)
            for follower in list(followers):
                self._send_partial(follower, job_id, [], status)

    # ---- retention --------------------------------------------------------------------------------

    def purge(self, now: float) -> int:
        """One bounded pass: logs of jobs finished longer ago than the retention, then the oldest jobs'
        logs while the total is over its limit. Returns the bytes deleted (0: nothing left to do)."""
        victims = self.store.jobs_with_old_logs(now - self.policy.retention, limit=200)
        excess = None  # by age: everything that qualifies
        if not victims and self.total_bytes > self.policy.max_total_bytes:
            victims = self.store.jobs_with_old_logs(None, limit=200)
            excess = self.total_bytes - self.policy.max_total_bytes  # by size: just enough, oldest first
        chosen: list[str] = []
        size = 0
        for job_id, job_bytes in victims:
            if (chosen and size + job_bytes > PURGE_BYTES_PER_PASS) or (excess is not None and size >= excess):
                break
            chosen.append(job_id)
            size += job_bytes
        if chosen:
            self.store.delete_logs(chosen)
            self.total_bytes -= size
            log.debug("purged the logs of %d jobs (%d bytes)", len(chosen), size)
        return size
