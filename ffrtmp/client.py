"""The Python API, which the CLI itself uses.

    from ffrtmp import Client
    with Client() as client:
        job_id = client.submit(scenario="test1", bitrate="2000k")
        job = client.wait(job_id)

Every call raises an `FfrtmpError` subclass on failure (its `exit_code` is the CLI's, README "Exit codes"). A master
that does not answer (down, wrong address, wrong key) raises `MasterUnreachable` within `timeout` seconds,
with a message that names the address and what to check.

`master` may list several masters (`tcp://a:8080,tcp://b:8080`): the client finds the leader (a standby
names it) and follows it through a failover, trying the next address when one does not answer, all within
the same `timeout` (ffrtmp/masters.py).
"""

from __future__ import annotations

import builtins
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ffrtmp import client_files, defaults
from ffrtmp.errors import (
    MasterUnreachable,
    ProtocolError,
    ProtocolMismatch,
    RateLimited,
    error_from_status,
)
from ffrtmp.files.transfer import Downloaded, Uploaded
from ffrtmp.masters import (
    ELECTION_PAUSE,
    MIN_TRY,
    SWITCH_PAUSE,
    MasterList,
    NotLeaderReply,
    refuses_connections,
    reply_error,
)
from ffrtmp.protocol import Kind, Message, decode, encode
from ffrtmp.recommend import request_args
from ffrtmp.security import KeyPair, client_keypair, default_master_key_path, load_public_key
from ffrtmp.subscription import RESUBSCRIBE_AFTER, LogStream, Subscription
from ffrtmp.tracing import client_carrier
from ffrtmp.transport import DealerSocket

T = TypeVar("T")
TERMINAL = ("completed", "failed", "canceled")
SUBMIT_CHUNK = 5000
"""Jobs per submit request for `submit_many` (keeps each frame far below the master's size limit)."""


SUBMIT_TRIES = 3
"""Rounds of `submit_many`: unanswered chunks are sent again this many times in all before it gives up."""


class SubmittedIds(list[str]):
    """The ids of a `submit_many`, in order; `repeated`: how many of them an earlier call had created
    already (its idempotency key was seen before), so no new job stands behind them."""

    repeated: int = 0


def retry_after(message: str, default: float) -> float:
    """The wait a rate-limited reply asks for ("retry after 0.25s")."""
    _, _, rest = message.partition("retry after ")
    try:
        return float(rest.split("s")[0])
    except ValueError:
        return default


def _with_trace(args: dict[str, Any]) -> dict[str, Any]:
    """Send the caller's trace context along, so the job's spans join the caller's trace."""
    carrier = client_carrier()
    return {**args, "trace": carrier} if carrier else args


__all__ = ["Client", "LogStream", "NotLeaderReply", "Subscription", "SubmittedIds", "TERMINAL", "reply_error",
           "resolve_master_key", "retry_after"]


def resolve_master_key(value: str | None, tls: bool = True) -> bytes | None:
    """--master-key, else FFRTMP_MASTER_KEY, else the key a master on this machine wrote to its data dir."""
    if not tls:
        return None
    value = value or os.environ.get("FFRTMP_MASTER_KEY")
    if value:
        return load_public_key(value)
    path = default_master_key_path()
    if path.exists():
        return load_public_key(path)
    raise MasterUnreachable(
        f"no master key: none given and none at {path}. Pass --master-key (the master's public key, Z85 or "
        "a master.key file) or set FFRTMP_MASTER_KEY; on the master's machine `ffrtmp master` writes it there")


class Client:
    def __init__(self, master: str | None = None, *, api_key: str | None = None, master_key: str | None = None,
                 client_key: str | Path | None = None, timeout: float | None = None, tls: bool = True) -> None:
        self.masters = MasterList.parse(master or os.environ.get("FFRTMP_MASTER") or defaults.MASTER_URL)
        self.api_key = api_key or defaults.api_key_from_env()
        self.timeout = defaults.CLIENT_TIMEOUT if timeout is None else timeout
        self._server_key = resolve_master_key(master_key, tls)
        key_path = client_key or os.environ.get("FFRTMP_CLIENT_KEY")
        self._keys = client_keypair(Path(key_path).expanduser() if key_path else None) if tls else None
        self._socket = DealerSocket(self.masters.address, self._server_key, self._keys)
        self._ids = itertools.count(1)

    @property
    def master(self) -> str:
        """The master this client talks to now (the leader, once found)."""
        return self.masters.address

    @property
    def curve(self) -> tuple[bytes | None, KeyPair | None]:
        """The master's public key and this client's key pair (None, None without CURVE): the data channel's too."""
        return self._server_key, self._keys

    @property
    def handshake_failed(self) -> bool:
        """The CURVE handshake with the current master failed (a wrong key: waiting longer will not help)."""
        return bool(self._socket.handshake_error)

    def explain_silence(self, timeout: float) -> str:
        """Why the current master may have said nothing for `timeout` seconds, and what to check."""
        return self._socket.explain_silence(timeout)

    def try_next_master(self) -> None:
        """Talk to the next master of the list (nothing changes when only one is listed)."""
        if len(self.masters) > 1:
            self._switch(self.masters.next())

    def follow_leader(self, leader: str) -> None:
        """Talk to `leader` (a standby named it) from now on; it joins the list if it was not on it."""
        self._switch(self.masters.follow(leader))

    def _switch(self, address: str) -> None:
        """Talk to `address` from now on (replies still due from the old one are lost with its socket)."""
        if address == self._socket.endpoint:
            return
        self._socket.close()
        self._socket = DealerSocket(address, self._server_key, self._keys)

    def _lost_connection(self) -> bool:
        """The socket's monitor saw a connection attempt fail (the master went away, or was never there)."""
        self._socket.poll_events()
        return self._socket.refused

    def _following(self, budget: float, attempt: Callable[[float], T]) -> T:
        """Run `attempt(seconds it may wait)` on the current master, going to the leader a standby names and
        past masters that do not answer, until it succeeds or `budget` seconds are spent."""
        deadline = time.monotonic() + budget
        redirect: NotLeaderReply | None = None
        tries = -1
        while True:
            tries += 1
            left = deadline - time.monotonic()
            many = len(self.masters) > 1
            if left <= 0 and redirect is not None:
                raise MasterUnreachable(f"no leader found within {budget:g}s among {self.masters}: {redirect}")
            # A TCP probe only when there is a doubt (each one shows in the master's log as a failed handshake).
            if many and (tries or self._lost_connection()) and refuses_connections(self.master):
                if left <= 0:
                    raise MasterUnreachable(f"no master answers within {budget:g}s: {self.master} refuses "
                                            f"connections, and so did the others of {self.masters}")
                self._switch(self.masters.next())
                time.sleep(min(SWITCH_PAUSE, max(0.0, left)))
                continue
            try:
                return attempt(max(0.0, min(left, max(MIN_TRY, budget / len(self.masters))) if many else left))
            except NotLeaderReply as exc:
                redirect = exc
                if exc.leader is None or exc.leader == self.master:
                    time.sleep(min(ELECTION_PAUSE, max(0.0, deadline - time.monotonic())))
                else:
                    self._switch(self.masters.follow(exc.leader))
            except MasterUnreachable:
                if not many or self._socket.handshake_error or time.monotonic() >= deadline:
                    raise
                self._switch(self.masters.next())

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the request/reply core ---------------------------------------------------------------------

    def send_request(self, op: str, args: dict[str, Any]) -> str:
        rid = str(next(self._ids))
        body: dict[str, Any] = {"rid": rid, "op": op, "args": args}
        if self.api_key:
            body["key"] = self.api_key
        self._socket.send(encode(Kind.REQUEST, body))
        return rid

    def _await_replies(self, rids: list[str], timeout: float) -> dict[str, Any]:
        """The bodies of the final replies to `rids`; an error reply raises its error."""
        waiting, results = set(rids), {}
        deadline = time.monotonic() + timeout
        while waiting:
            message = self.next_message(waiting, max(0.0, deadline - time.monotonic()), timeout)
            if message.kind is not Kind.REPLY:
                continue
            waiting.discard(message.body["rid"])
            if message.body["status"] != 200:
                raise reply_error(message.body)
            results[message.body["rid"]] = message.body.get("body")
        return results

    def request(self, op: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One request to the leader (found and followed as `_following` says); the same `args` on every try.

        A submit without an idempotency key gets one here, the same on every try: a submit resent to a new
        leader (the first one stored it, then died before answering) never makes a second job.
        """
        args = dict(args or {})
        if op == "submit" and "idempotency_key" not in args:
            args["idempotency_key"] = os.urandom(16).hex()

        def attempt(left: float) -> Any:
            rid = self.send_request(op, args)
            return self._await_replies([rid], left)[rid]

        return self._following(self.timeout if timeout is None else timeout, attempt)

    # ---- jobs ---------------------------------------------------------------------------------------

    def submit(self, scenario: str, **options: Any) -> str:
        """Submit one job; options are those of `ffrtmp jobs submit` (bitrate, resolution, queue, …).

        `input=Path(...)` uploads that local file to the master's file store first (not again when it holds it
        already) and the job reads it from there; an `input` string is a path on the workers (or a URL) unless
        `upload="auto"` or `"always"` says to send it as `jobs submit --input` does (docs/files.md)."""
        local = isinstance(options.get("input"), Path)
        options = {**options, "upload": options.get("upload") or ("always" if local else "never")}
        if local:
            options["input"] = str(options["input"])
        raw = {"scenario": scenario, **{k: v for k, v in options.items() if v is not None}}
        raw = client_files.Uploads(self).rewrite(raw)  # checked before any upload; the master checks again
        ids: list[str] = self.request("submit", _with_trace({"jobs": [raw]}))["ids"]  # keyed by `request`
        return ids[0]

    def upload(self, path: Path, progress: Callable[[int, int], None] | None = None) -> Uploaded:
        """Store a local file in the master's file store for this client's tenant (`sent` 0: it was there)."""
        return client_files.Uploads(self, lambda what: progress).file(Path(path).expanduser().resolve())

    def fetch(self, job_id: str, path: Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> Downloaded:
        """Download a job's stored output to `path` (a file, or a directory for its own name; default: its name
        in the current directory), resuming a partial download; NotFound when the job has no stored output."""
        return client_files.fetch(self, job_id, Path(path) if path is not None else None, lambda what: progress)

    def submit_many(self, jobs: Iterable[dict[str, Any]], key: str | None = None,
                    tries: int = SUBMIT_TRIES) -> SubmittedIds:
        """Submit many jobs in few requests (pipelined chunks); returns their ids in order.

        Each chunk is all-or-nothing on the master: an invalid job rejects its chunk with an error naming it.
        Each chunk carries an idempotency key, `KEY:INDEX`, that the master remembers (for a day by default):
        chunks left unanswered (a master restart, a lost connection) are sent again, up to `tries` rounds,
        and a chunk the master already stored answers with its first ids, so no job is created twice.
        Pass a stable `key` (e.g. a hash of the input) to make a rerun of the whole call after a failure
        create only what is missing; without one, a random key protects this call's own retries.
        """
        jobs = list(jobs)
        call = key if key is not None else os.urandom(16).hex()
        chunks = {index: jobs[start:start + SUBMIT_CHUNK]
                  for index, start in enumerate(range(0, len(jobs), SUBMIT_CHUNK))}
        answers: dict[int, dict[str, Any]] = {}

        def send_unanswered(left: float) -> None:
            rids = {self.send_request("submit", _with_trace({"jobs": chunk, "idempotency_key": f"{call}:{index}"})):
                    index for index, chunk in chunks.items() if index not in answers}
            self._chunk_replies(rids, left, answers)

        for round_ in range(1, tries + 1):
            try:
                self._following(self.timeout + (len(chunks) - len(answers)) * 2.0, send_unanswered)
                break
            except MasterUnreachable:
                if round_ == tries:
                    raise
        ids = SubmittedIds(job_id for index in sorted(chunks) for job_id in answers[index]["ids"])
        ids.repeated = sum(len(answers[index]["ids"]) for index in chunks if answers[index].get("repeated"))
        return ids

    def _chunk_replies(self, rids: dict[str, int], timeout: float, answers: dict[int, dict[str, Any]]) -> None:
        """Put in `answers` (chunk index → reply body) the replies to the submits sent as `rids`, as they come,
        so those answered are kept when the others time out (MasterUnreachable); an error reply raises."""
        waiting = set(rids)
        deadline = time.monotonic() + timeout
        while waiting:
            message = self.next_message(waiting, max(0.0, deadline - time.monotonic()), timeout)
            if message.kind is not Kind.REPLY:
                continue
            if message.body["status"] != 200:
                raise reply_error(message.body)
            waiting.discard(message.body["rid"])
            answers[rids[message.body["rid"]]] = message.body.get("body") or {}

    def get(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("get", {"id": job_id})
        return job

    def list(self, status: str | None = None, queue: str | None = None, node: str | None = None,
             limit: int | None = 50, all: bool = False) -> builtins.list[dict[str, Any]]:
        """Jobs newest first: `limit` of them, or with `all` every one (fetched a page at a time)."""
        jobs: builtins.list[dict[str, Any]] = []
        size = 1000 if all or limit is None else max(1, min(limit, 1000))
        for page in self.pages(status=status, queue=queue, node=node, page_size=size):
            jobs += page
            if not all and limit is not None and len(jobs) >= limit:
                return jobs[:limit]
        return jobs

    def pages(self, status: str | None = None, queue: str | None = None, node: str | None = None,
              page_size: int = 1000) -> Iterator[builtins.list[dict[str, Any]]]:
        """Pages of jobs, newest first, following the master's cursor (it sends at most 1,000 per reply)."""
        cursor: int | None = None
        while True:
            args = {"status": status, "queue": queue, "node": node, "limit": page_size, "cursor": cursor}
            reply = self.request("list", {k: v for k, v in args.items() if v is not None})
            yield reply["jobs"]
            cursor = reply.get("next")
            if not cursor:
                return

    def report(self, by: str = "scenario", since: float | None = None, group: str | None = None,
               points: bool = False) -> dict[str, Any]:
        """Completed jobs' quality, speed, energy and cost per group (`points`: rate–quality points too)."""
        args = {"by": by, "since": since, "group": group, "points": points or None}
        result: dict[str, Any] = self.request("report", {k: v for k, v in args.items() if v is not None})
        return result

    def recommend(self, resolution: str, fps: int, *, target_vmaf: float | None = None,
                  target_psnr: float | None = None, codec: str | None = None) -> dict[str, Any]:
        """The cheapest measured encoder and bitrate expected to meet one target (as `ffrtmp recommend --json`):
        `recommendation` (None when the history is too thin), `encoders` with the measurements used, `sweeps`."""
        result: dict[str, Any] = self.request("recommend", request_args(resolution, fps, target_vmaf, target_psnr,
                                                                        codec))
        return result

    def wait(self, job_id: str, timeout: float | None = None,
             on_update: Callable[[dict[str, Any]], None] | None = None, poll: float = 0.25) -> dict[str, Any]:
        """Block until the job ends; returns it. `on_update` sees the job every `poll` seconds meanwhile.

        Without `on_update` nothing is polled: the master says when the job ends (a `logs.follow` without
        lines), so the answer comes the moment it is recorded.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if on_update is None:
            follow = Subscription(self, {"id": job_id, "lines": False})
            while True:
                message = follow.next(deadline)
                if message is None:
                    raise TimeoutError(f"job {job_id} did not end within {timeout}s")
                if message.kind is Kind.REPLY:
                    if message.body["status"] != 200:
                        raise error_from_status(message.body["status"], message.body.get("error", "request failed"))
                    return self.get(job_id)
        heard = time.monotonic()
        while True:
            try:
                job: dict[str, Any] = self.request("get", {"id": job_id}, timeout=min(self.timeout, RESUBSCRIBE_AFTER))
            except RateLimited as exc:
                time.sleep(retry_after(str(exc), poll))
                continue
            except MasterUnreachable:
                # A master restart takes a few seconds: ask again until it has been silent for `timeout`.
                if self.handshake_failed or time.monotonic() - heard >= self.timeout:
                    raise
                continue
            heard = time.monotonic()
            on_update(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(poll)

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("cancel", {"id": job_id})
        return result

    def retry(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("retry", {"id": job_id})
        return result

    def logs(self, job_id: str, attempt: int | str | None = None, tail: int | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"id": job_id}
        if attempt is not None:
            args["attempt"] = attempt
        if tail is not None:
            args["tail"] = tail
        result: dict[str, Any] = self.request("logs", args)
        return result

    def follow_logs(self, job_id: str, attempt: int | str | None = None, tail: int | None = None) -> LogStream:
        """Iterate over a job's log lines as they are written, until the job ends.

        Yields line dicts (attempt, seq, at, stream, line); afterwards `.job` holds the job's final
        id/status/error. `attempt`: one attempt, `"all"`, or None for the latest and any retries after it.
        Survives a master restart (it follows again from the last line seen); raises `MasterUnreachable`
        when the master says nothing at all for longer than the timeout.
        """
        args: dict[str, Any] = {"id": job_id}
        if attempt is not None:
            args["attempt"] = attempt
        if tail is not None:
            args["tail"] = tail
        return LogStream(self, args)

    def next_message(self, rids: set[str] | str, left: float, timeout: float | None = None) -> Message:
        """The next PARTIAL or REPLY to one of `rids` (late replies to earlier requests are skipped).

        MasterUnreachable after `left` seconds without one, or at once when the CURVE handshake failed;
        the message names the address, the `timeout` waited and what to check.
        """
        wanted = {rids} if isinstance(rids, str) else rids
        deadline = time.monotonic() + left
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MasterUnreachable(self._socket.explain_silence(timeout or left))
            frame = self._socket.recv(min(remaining, 0.05))
            if frame is None:
                self._socket.poll_events()
                if self._socket.handshake_error:
                    raise MasterUnreachable(self._socket.explain_silence(timeout or left))
                continue
            try:
                message = decode(frame)
            except ProtocolMismatch as exc:
                raise ProtocolError(exc.sentence("master", "client")) from None
            except ProtocolError:
                continue
            if message.kind in (Kind.PARTIAL, Kind.REPLY) and message.body.get("rid") in wanted:
                return message

    # ---- nodes and the cluster ----------------------------------------------------------------------

    def nodes(self) -> builtins.list[dict[str, Any]]:
        nodes: builtins.list[dict[str, Any]] = self.request("nodes.list")["nodes"]
        return nodes

    def node(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = self.request("nodes.get", {"name": name})
        return node

    def drain(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("nodes.drain", {"name": name})
        return result

    def forget(self, name: str) -> dict[str, Any]:
        """Drop an offline node from the master's lists (Conflict while it is connected or owns attempts)."""
        result: dict[str, Any] = self.request("nodes.forget", {"name": name})
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("stats")
        return result

    def cluster(self) -> dict[str, Any]:
        """Who leads, in which term, and every master seen: `{"leader", "term", "address", "masters": [...]}`.

        Any master answers this one, leader or standby; the first of the list that answers is asked.
        """
        def attempt(left: float) -> Any:
            rid = self.send_request("cluster", {})
            return self._await_replies([rid], left)[rid]

        result: dict[str, Any] = self._following(self.timeout, attempt)
        return result
