"""Client requests: one small function per operation (the registry in operations.py names them).

Each returns the reply body or raises an `FfrtmpError` whose status becomes the reply's (and, on the
client, the exit code: docs/protocol.md, "Errors"). Arguments come from the network: every one is checked here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ffrtmp import __version__, defaults
from ffrtmp.errors import InvalidInput, NotFound, RateLimited
from ffrtmp.files.wire import CHUNK_SIZE, WINDOW
from ffrtmp.jobspec import PRIORITY_WEIGHTS, QUEUE_WEIGHTS, JobSpec, validate_submission
from ffrtmp.master.auth import Principal, quotas
from ffrtmp.master.serialize import job_json, node_json
from ffrtmp.master.standby import cluster_status
from ffrtmp.master.state import MasterState
from ffrtmp.master.store import TERMINAL, JobRow
from ffrtmp.master.store.files import FileRef
from ffrtmp.master.tenants import allowed_lanes, check_lane
from ffrtmp.master.upkeep import forget_node
from ffrtmp.protocol import Kind

Args = dict[str, Any]

MAX_SUBMIT = 50_000
LIST_BUDGET = 0.003
"""Seconds of the master's loop one `list` page may take; past it the page ends early, with a cursor."""
MAX_KEY = 200
"""Longest idempotency key of a submit (a client's call key plus its chunk index)."""
STATUSES = ("pending", "assigned", "running", "completed", "failed", "canceled")


def _str_arg(args: Args, name: str, *, required: bool = True, limit: int = 256) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(name, "must be a non-empty string")
    return value


def _int_arg(args: Args, name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(name, f"must be a whole number from {low} to {high}")
    return value


def _job_id(state: MasterState, caller: Principal, args: Args) -> str:
    """The job the request names; another tenant's job does not exist for the caller."""
    return state.store.resolve_job_id(_str_arg(args, "id") or "", tenant=caller.scope)


def submit(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    jobs = args.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise InvalidInput("jobs", "must be a non-empty list of jobs")
    if len(jobs) > MAX_SUBMIT:
        raise InvalidInput("jobs", f"at most {MAX_SUBMIT} jobs in one request")
    key = _str_arg(args, "idempotency_key", required=False, limit=MAX_KEY)
    if key is not None and (earlier := state.store.submitted_ids(caller.tenant, key)) is not None:
        if len(earlier) != len(jobs):
            raise InvalidInput("idempotency_key", f"{key!r} was used for a submit of {len(earlier)} jobs, this one "
                               f"has {len(jobs)}: use a new key for a new submission")
        return {"ids": earlier, "repeated": True}  # a retry or a rerun: the jobs exist already
    specs = []
    lanes = allowed_lanes(state.store) if caller.role != "admin" else None
    for index, raw in enumerate(jobs):
        try:
            spec = validate_submission(raw, output_roots=state.config.output_roots)
            state.config.limits.check(spec)
            check_lane(lanes, caller.tenant, spec.queue, spec.priority)
            specs.append(spec)
        except InvalidInput as exc:
            field = exc.field if len(jobs) == 1 else f"jobs[{index}].{exc.field}"
            raise InvalidInput(field, exc.problem) from None
    _check_pending_quota(state, caller.tenant, len(specs))
    inputs = _stored_inputs(state, caller.tenant, specs, now)
    ids = state.store.insert_jobs(specs, now, state.config.max_retries, tenant=caller.tenant)
    for index, ref in inputs:
        state.store.link_job_file(ids[index], "input", 0, caller.tenant, ref, now)
    if key is not None:
        state.store.remember_submit(caller.tenant, key, ids, now)
    state.observer.jobs_submitted(
        [{"id": job_id, "queue": spec.queue, "priority": spec.priority, "engine": spec.engine,
          "trace": args.get("trace")} for job_id, spec in zip(ids, specs, strict=True)], now)
    state.due.soon()
    return {"ids": ids}


def _stored_inputs(state: MasterState, tenant: str, specs: list[JobSpec], now: float) -> list[tuple[int, FileRef]]:
    """The jobs' `input_file`s, each held by the tenant (404 naming the field otherwise), marked as used."""
    found: list[tuple[int, FileRef]] = []
    for index, spec in enumerate(specs):
        ref = spec.params.get("input_file")
        if ref is None:
            continue
        row = state.store.find_file(tenant, ref["sha256"])
        if row is None or row["size"] != ref["size"]:
            field = "input_file" if len(specs) == 1 else f"jobs[{index}].input_file"
            raise NotFound(f"{field}: no stored file {ref['sha256']} of {ref['size']} bytes for this tenant "
                           "(upload it first: jobs submit --input PATH does)")
        state.store.touch_file(tenant, ref["sha256"], now)
        found.append((index, {"sha256": ref["sha256"], "size": ref["size"], "name": ref["name"] or row["name"]}))
    return found


def _check_pending_quota(state: MasterState, tenant: str, adding: int) -> None:
    limits = quotas(state.store).get(tenant)
    quota = limits["max_pending"] if limits is not None else None
    if quota is None:
        return
    pending = state.store.tenant_pending(tenant)
    if pending + adding > quota:
        raise RateLimited(f"tenant {tenant!r} may have {quota} pending jobs and has {pending}; "
                          f"retry after some have started (quota: ffrtmp keys quota)")


def files_info(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    """Where the data channel is (docs/files.md); 404 when this master has none (--files-port 0)."""
    if not state.config.files_port:
        raise NotFound("this master has no data channel for files (it runs with --files-port 0)")
    return {"port": state.config.files_port, "chunk_size": CHUNK_SIZE, "window": WINDOW}


def file_access(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    """Who the caller is, for the HTTP API's file endpoints (`upload`, `download`): their bytes move off the loop
    (filedesk.py), but the key, role, rate and leadership are checked here, as for every request."""
    return {"role": caller.role, "tenant": caller.tenant}


def get(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    job_id = _job_id(state, caller, args)
    job = state.store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    shown = job_json(job, state.store.job_history(job_id), state.store.job_attempts(job_id))
    shown["files"] = state.store.job_files(job_id)
    return shown


def list_jobs(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    status = _str_arg(args, "status", required=False)
    queue = _str_arg(args, "queue", required=False)
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    if queue is not None and queue not in QUEUE_WEIGHTS:
        raise InvalidInput("queue", f"{queue!r} is not one of {', '.join(QUEUE_WEIGHTS)}")
    # One page at most, and only as much as fits LIST_BUDGET: a huge listing would hold the master's loop
    # (and everyone else) for seconds. `next` is the cursor of the rest; clients follow it.
    limit = min(_int_arg(args, "limit", 50, 1, 100_000), defaults.LIST_PAGE)
    before = _int_arg(args, "cursor", 0, 0, 2**62) or None
    jobs: list[dict[str, Any]] = []
    cursor = None
    deadline = time.perf_counter() + LIST_BUDGET
    with contextlib.closing(state.store.iter_jobs(
            status=status, queue=queue, node=_str_arg(args, "node", required=False), limit=limit + 1,
            tenant=caller.scope, before=before)) as rows:
        for row in rows:
            if len(jobs) == limit or (len(jobs) % 64 == 63 and time.perf_counter() > deadline):
                break
            jobs.append(job_json(row))
            cursor = row["seq"]
        else:
            cursor = None  # the end: nothing left past this page
    return {"jobs": jobs, "next": cursor}


def cancel(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    job_id = _job_id(state, caller, args)
    before = state.store.cancel_job(job_id, now)
    if before is not None:
        state.lifecycle.job_finished(job_id)
    if before is None:
        job = state.store.get_job(job_id)
        return {"id": job_id, "status": job["status"] if job else "unknown", "changed": False}
    if before["status"] in ("assigned", "running"):
        session = state.registry.get(before["node"] or "")
        if session is not None and session.route is not None:
            state.outbox.cancel(session.route, job_id, before["attempts"])
    return {"id": job_id, "status": "canceled", "changed": True}


def retry(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    job_id = _job_id(state, caller, args)
    if not state.store.retry_job(job_id, now):
        job = state.store.get_job(job_id)
        status = job["status"] if job else "unknown"
        raise InvalidInput("id", f"job {job_id} is {status}; only failed or canceled jobs can be retried")
    state.due.soon()
    return {"id": job_id, "status": "pending"}


def _log_args(state: MasterState, caller: Principal,
              args: Args) -> tuple[JobRow, int | None, bool, int | None]:
    """The job, the one attempt asked for (None: latest or all), whether all were asked for, and the tail."""
    job_id = _job_id(state, caller, args)
    job = state.store.get_job(job_id)
    assert job is not None
    attempt_arg = args.get("attempt")
    every = attempt_arg == "all"
    attempt = None if every or attempt_arg is None else _int_arg(args, "attempt", 0, 1, 1_000_000)
    tail = None if args.get("tail") is None else _int_arg(args, "tail", 0, 0, 1_000_000)
    return job, attempt, every, tail


def logs(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    job, attempt, every, tail = _log_args(state, caller, args)
    if attempt is None and not every:
        attempt = job["attempts"] or None
    lines = state.store.job_logs(job["id"], attempt, tail)
    dropped = state.store.log_size(job["id"])[1]
    return {"id": job["id"], "status": job["status"], "attempts": job["attempts"], "lines": lines,
            "done": job["status"] in TERMINAL, "dropped": dropped}


def follow_logs(state: MasterState, caller: Principal, route: bytes, rid: str, args: Args, now: float) -> None:
    """Stream a job's log: stored lines, then new ones as they come, then a final reply when the job ends."""
    job, attempt, every, tail = _log_args(state, caller, args)
    after = args.get("after")
    if after is not None and not (isinstance(after, list) and len(after) == 2 and all(
            type(x) is int and 0 <= x <= 2**53 for x in after)):
        raise InvalidInput("after", "must be [attempt, seq], two whole numbers (the last line seen)")
    replaces = args.get("replaces")
    if replaces is not None and not (isinstance(replaces, str) and len(replaces) <= 64):
        raise InvalidInput("replaces", "must be the request id of an earlier follow (64 characters at most)")
    owner = caller.key if caller.key != "-" else state.peer(route)
    state.logbook.follow(route, rid, job, attempt, tail, every, lines=args.get("lines", True) is not False,
                               owner=owner, after=(after[0], after[1]) if after else None, replaces=replaces)


def _node_live(state: MasterState, name: str) -> dict[str, Any] | None:
    session = state.registry.get(name)
    return session.live() if session is not None else None


def _node_for(state: MasterState, caller: Principal, row: Mapping[str, Any]) -> dict[str, Any]:
    """A node as `caller` may see it: a tenant's key sees the ids and progress of its own jobs only."""
    live = _node_live(state, row["name"])
    session = state.registry.get(row["name"])
    if live is not None and session is not None and caller.scope is not None:
        mine = {job for job, state in session.attempts.items() if state.tenant == caller.scope}
        live = {**live, "jobs": [job for job in live["jobs"] if job in mine],
                "progress": {job: value for job, value in live["progress"].items() if job in mine}}
    return node_json(row, live)


def nodes_list(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    return {"nodes": [_node_for(state, caller, row) for row in state.store.list_nodes()]}


def nodes_get(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    name = _str_arg(args, "name") or ""
    row = state.store.get_node(name)
    if row is None:
        raise NotFound(f"no node {name!r}")
    return _node_for(state, caller, row)


def nodes_drain(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    name = _str_arg(args, "name") or ""
    session = state.registry.get(name)
    if session is None or session.route is None:
        raise NotFound(f"no connected node {name!r}")
    session.status = "draining"
    state.store.update_node(name, status="draining")
    state.outbox.send(session.route, Kind.DRAIN)
    return {"name": name, "status": "draining", "running": len(session.attempts)}


def nodes_forget(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    name = _str_arg(args, "name") or ""
    forget_node(state, name)
    return {"name": name, "forgotten": True}


def stats(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    counts = state.store.status_counts(caller.scope)
    capacity = state.registry.capacity()
    return {
        "jobs": {status: counts.get(status, 0) for status in STATUSES},
        "nodes": {"total": capacity.nodes, "slots": capacity.slots, "busy_slots": capacity.busy_slots,
                  "queued": capacity.queued},
        "queues": state.store.pending_by_queue(caller.scope),
        "activity": state.activity.series(now, tenant=caller.scope),
        "version": __version__,
        "uptime": now - state.started_at,
    }


def cluster(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    """The lease and the masters. Any master answers it, a standby too: the server's cluster hook
    (master/membership.py) serves it before a frame reaches the coordinator; this is the same answer."""
    return cluster_status(state.store)


def ping(state: MasterState, caller: Principal, args: Args, now: float) -> Any:
    return {"version": __version__, "priorities": list(PRIORITY_WEIGHTS)}
