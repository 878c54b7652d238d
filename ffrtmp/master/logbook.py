"""Job logs on the master: a per-job cap, live followers, and retention by age and total size.

Lines arrive from workers in batches and are stored inside the coordinator's transaction (batched
commits). A line already stored (a worker resends what was not acknowledged) is ignored by its
(job, attempt, seq); the highest seq taken per attempt goes back to the worker on its next heartbeat
reply, and only then may the worker forget those lines. A client that follows a job gets the stored lines,
then every new batch as a PARTIAL as soon as it is stored, a keep-alive PARTIAL every second, and one final
REPLY when the job ends (the MDP/0.2 shape); the number of followers is capped per key and in total.
Old logs are purged a little at a time from the maintenance tick, so dispatch never waits on a big delete;
past the total cap the tenant holding the most log pays first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ffrtmp import defaults
from ffrtmp.errors import RateLimited
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
ACKS_PER_ROUTE = 1000
"""Attempts whose acknowledgement one heartbeat reply carries at most (the worker resends the rest)."""
SEQ_MEMORY = 100_000
"""Attempts whose highest stored seq is kept in memory; past it the memory is cleared and read back lazily."""
SHARE_TENANTS_PER_PASS = 20
"""Past the total cap, one pass looks at this many of the biggest tenants for finished jobs' logs."""
RESTARTING = "the master is restarting: follow again"


@dataclass(frozen=True)
class LogPolicy:
    max_job_bytes: int = defaults.LOG_MAX_JOB_BYTES
    retention: float = defaults.LOG_RETENTION
    max_total_bytes: int = defaults.LOG_MAX_TOTAL_BYTES
    max_followers: int = defaults.LOG_MAX_FOLLOWERS
    max_followers_per_key: int = defaults.LOG_MAX_FOLLOWERS_PER_KEY


@dataclass
class Follower:
    route: bytes
    rid: str
    attempt: int | None
    """Only this attempt's lines; None: every attempt from `min_attempt` on."""
    min_attempt: int = 0
    lines: bool = True
    """False: the follower only waits for the end (keep-alives and the final reply, no lines)."""
    owner: str = ""
    """Whose follower this is (the API key, or the connection without keys): the per-key cap counts these."""
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
        self.following: dict[str, int] = {}
        """Followers open per owner."""
        self.open_followers = 0
        """All followers open (kept as a number: the metrics thread reads it)."""
        self.total_bytes = store.total_log_bytes()
        self.tenant_bytes = store.log_bytes_by_tenant()
        self.last_keepalive = 0.0
        self.truncated = 0
        self.duplicates = 0
        """Lines received again (a worker's resend after a reconnect) and ignored."""
        self.highest: dict[str, dict[int, int]] = {}
        """Per job and attempt, the highest seq taken (stored, or cut by the cap): lines up to it are duplicates."""
        self.acks: dict[bytes, dict[tuple[str, int], int]] = {}
        """Per worker route, the highest seq to acknowledge per attempt on its next heartbeat reply."""

    # ---- writing ----------------------------------------------------------------------------------

    def received(self, route: bytes, job_id: str, attempt: int, seq: int) -> None:
        """Lines up to `seq` from this worker are taken care of (stored, or ignored for good): acknowledge them."""
        acks = self.acks.setdefault(route, {})
        key = (job_id, attempt)
        if key in acks or len(acks) < ACKS_PER_ROUTE:
            acks[key] = max(seq, acks.get(key, seq))

    def take_acks(self, route: bytes) -> list[list[Any]]:
        """The acknowledgements for one worker's heartbeat reply, [job, attempt, seq] each."""
        return [[job_id, attempt, seq] for (job_id, attempt), seq in self.acks.pop(route, {}).items()]

    def forget_route(self, route: bytes) -> None:
        self.acks.pop(route, None)

    def append(self, job_id: str, attempt: int, lines: list[Line]) -> None:
        """Store the new lines that fit under the job's cap; past it, one marker line says the log was cut."""
        lines, top = self._fresh(job_id, attempt, lines)
        if lines:
            self._store(job_id, attempt, lines)
        self.highest.setdefault(job_id, {})[attempt] = top  # only once stored: a failed write is taken again

    def _store(self, job_id: str, attempt: int, lines: list[Line]) -> None:
        stored, dropped_before, tenant = self.store.log_owner(job_id)
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
            size = sum(len(line[3]) + 1 for line in kept)
            self.total_bytes += size
            self.tenant_bytes[tenant] = self.tenant_bytes.get(tenant, 0) + size
        if kept:
            self._push(job_id, attempt, kept)

    def _fresh(self, job_id: str, attempt: int, lines: list[Line]) -> tuple[list[Line], int]:
        """The lines past the highest seq already taken for this attempt, in order, and the new highest."""
        if job_id not in self.highest and len(self.highest) >= SEQ_MEMORY:
            self.highest.clear()  # read back from the store as needed
        top = self.highest.get(job_id, {}).get(attempt)
        if top is None:
            stored = self.store.max_log_seq(job_id, attempt)
            top = -(2**63) if stored is None else stored
        fresh: list[Line] = []
        for line in lines:
            if line[0] > top:
                fresh.append(line)
                top = line[0]
        self.duplicates += len(lines) - len(fresh)
        return fresh, top

    def forget_uncommitted(self) -> None:
        """A transaction was rolled back: what was taken in it may not be stored, so read it back from the
        store and acknowledge nothing until lines come again."""
        self.highest.clear()
        self.acks.clear()

    # ---- following --------------------------------------------------------------------------------

    def follow(self, route: bytes, rid: str, job: Mapping[str, Any], attempt: int | None, tail: int | None,
               every_attempt: bool, lines: bool = True, *, owner: str = "", after: tuple[int, int] | None = None,
               replaces: str | None = None) -> None:
        """Send what is stored, then either end (a finished job) or stream what comes.

        With `lines` False this is a wait: no lines, just keep-alives and the final reply (`Client.wait`).
        `after` (attempt, seq): a follower resuming after a reconnect gets only later lines; `replaces`: the
        request id of its earlier subscription on this connection, which ends now.
        """
        if replaces is not None:
            for old in list(self.followers.get(job["id"], [])):
                if old.route == route and old.rid == replaces:
                    self._drop(job["id"], old)
        if job["status"] not in TERMINAL:
            self._check_room(owner)
        latest = job["attempts"]
        min_attempt = 0 if every_attempt else latest if after is None else min(latest, after[0])
        follower = Follower(route, rid, attempt, min_attempt=min_attempt, lines=lines, owner=owner)
        if not lines:
            stored = []
        elif attempt is not None:
            stored = self.store.job_logs(job["id"], attempt=attempt, tail=None if after else tail)
        else:
            stored = self.store.job_logs(job["id"], tail=None if after else tail, min_attempt=follower.min_attempt)
        if after is not None:
            stored = [row for row in stored if (row["attempt"], row["seq"]) > after]
        for start in range(0, len(stored), PARTIAL_LINES):
            self._send_partial(follower, job["id"], stored[start:start + PARTIAL_LINES], job["status"])
        if job["status"] in TERMINAL:
            self._end(follower, job)
            return
        self.followers.setdefault(job["id"], []).append(follower)
        self.following[owner] = self.following.get(owner, 0) + 1
        self.open_followers += 1

    def _check_room(self, owner: str) -> None:
        if self.open_followers >= self.policy.max_followers:
            raise RateLimited(f"too many log followers: the master serves {self.policy.max_followers} at most "
                              "(--max-followers); try again when some have ended")
        if self.following.get(owner, 0) >= self.policy.max_followers_per_key:
            raise RateLimited(f"too many log followers for this key: {self.policy.max_followers_per_key} at most "
                              "(--max-followers-per-key); stop some first")

    def follower_count(self) -> int:
        return self.open_followers

    def _push(self, job_id: str, attempt: int, lines: list[Line]) -> None:
        rows = [{"attempt": attempt, "seq": seq, "at": at, "stream": stream, "line": text}
                for seq, at, stream, text in lines]
        for follower in self.followers.get(job_id, []):
            if follower.wants(attempt):
                self._send_partial(follower, job_id, rows, None)

    def _send_partial(self, follower: Follower, job_id: str, rows: Sequence[Mapping[str, Any]],
                      status: str | None) -> None:
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
            self._release(follower)
        if not followers:
            self.followers.pop(job_id, None)

    def _release(self, follower: Follower) -> None:
        self.open_followers -= 1
        left = self.following.get(follower.owner, 0) - 1
        if left > 0:
            self.following[follower.owner] = left
        else:
            self.following.pop(follower.owner, None)

    def job_ended(self, job: Mapping[str, Any]) -> None:
        self.highest.pop(job["id"], None)  # no more lines are taken for it
        for follower in self.followers.pop(job["id"], []):
            self._release(follower)
            self._end(follower, job)

    def restarting(self) -> None:
        """The master stops (SIGTERM): tell every follower now, so it re-subscribes as soon as we are back."""
        for followers in self.followers.values():
            for follower in followers:
                self.queue(follower.route, encode(Kind.REPLY, {"rid": follower.rid, "status": 503,
                                                               "error": RESTARTING}), None)
        self.followers.clear()
        self.following.clear()
        self.open_followers = 0

    def _end(self, follower: Follower, job: Mapping[str, Any]) -> None:
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
            victims = self._over_share()
            excess = self.total_bytes - self.policy.max_total_bytes  # by size: just enough, oldest first
        chosen: list[str] = []
        size = 0
        for job_id, job_bytes, tenant in victims:
            if (chosen and size + job_bytes > PURGE_BYTES_PER_PASS) or (excess is not None and size >= excess):
                break
            chosen.append(job_id)
            size += job_bytes
            self.tenant_bytes[tenant] = max(0, self.tenant_bytes.get(tenant, 0) - job_bytes)
        if chosen:
            self.store.delete_logs(chosen)
            self.total_bytes -= size
            log.debug("purged the logs of %d jobs (%d bytes)", len(chosen), size)
        return size

    def _over_share(self) -> list[tuple[str, int, str]]:
        """Past the total cap: the oldest finished jobs of the tenant holding the most log (so one tenant's
        chatty jobs evict its own logs, not everyone's); the next biggest when that one has none finished."""
        biggest = sorted(self.tenant_bytes, key=lambda t: self.tenant_bytes[t], reverse=True)
        for tenant in biggest[:SHARE_TENANTS_PER_PASS]:
            victims = self.store.jobs_with_old_logs(None, limit=200, tenant=tenant)
            if victims:
                return victims
        return []
