"""Messages from workers: one function per kind (HELLO, HEARTBEAT, STARTED, LOG, RESULT, BYE).

Each takes the master's state, the sender's route, the decoded message and the time. Everything a worker says
about an attempt is fenced: it counts only while that attempt is the one the master has the node running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ffrtmp.errors import InvalidInput, NotAuthorized
from ffrtmp.failures import Failure, classify
from ffrtmp.master.auth import Principal
from ffrtmp.master.lifecycle import timeout_of
from ffrtmp.master.nodes import NodeSession, check_hello
from ffrtmp.master.scheduler import quality_metrics
from ffrtmp.master.shared_storage import check_sees
from ffrtmp.master.state import MasterState
from ffrtmp.master.store import Ending
from ffrtmp.protocol import (
    HelloBody,
    Kind,
    Message,
    ResultBody,
    heartbeat_body,
    hello_body,
    log_body,
    result_body,
    started_body,
)

log = logging.getLogger("ffrtmp.master")

MAX_LOG_LINE = 8192
REFUSAL_DELAY = 1.0
"""A job a worker turned down waits this long before the next dispatch try (no hot loop)."""


def on_hello(state: MasterState, route: bytes, message: Message, now: float) -> None:
    body = hello_body(message)
    try:
        caller = state.authority.authenticate(body.get("key"))
        if not caller.may("worker"):
            raise NotAuthorized(f"a {caller.role} key cannot run a worker (it needs the worker or admin role)")
    except NotAuthorized as exc:
        state.outbox.refuse(route, 401, str(exc))
        return
    try:
        check_hello(body)
    except InvalidInput as exc:
        state.outbox.refuse(route, 400, str(exc))
        return
    name = body["name"]
    old = state.registry.get(name)
    problem = _name_refused(state, caller, name, old)
    if problem is not None:
        state.outbox.refuse(route, 401, problem)
        return
    if old is not None and old.route is not None and old.route != route and old.status != "offline" \
            and state.outbox.probe(old.route):
        # The incumbent's connection is still up: a second live worker must not steal its identity.
        state.outbox.refuse(route, 409, f"a worker named {name!r} is already connected; stop it or pick another --name")
        return
    session = _register(state, route, body, old, now)
    session.key, session.serves = caller.key, caller.serves
    _reconcile_running(state, session, body.get("running", []), now)
    state.store.upsert_node(session.record(), now)
    config = state.config
    state.outbox.send(route, Kind.WELCOME, {"node": name, "heartbeat_interval": config.heartbeat_interval,
                                            "node_timeout": config.node_timeout, "publish": True,
                                            **({"files_port": config.files_port} if config.files_port else {})})
    log.info("worker %s joined (%d slots, engines %s)", name, session.slots, ",".join(sorted(session.engines)),
             extra={"node": name})
    state.due.soon()


def _name_refused(state: MasterState, caller: Principal, name: str, old: NodeSession | None) -> str | None:
    """Why `caller` may not register as `name`: its key names other nodes, or the name is another key's.

    A node belongs to the key that registered it while that key is active, so a squatter with another key
    can neither take over its name (and its waiting attempts) nor make the real worker exit.
    """
    if not caller.may_name(name):
        return f"this worker key may register only as {caller.node!r}, not {name!r} (--name)"
    bound: str | None
    if old is not None and old.key is not None:
        bound = old.key
    else:
        row = state.store.get_node(name)
        bound = row.get("api_key") if row is not None else None
    if bound in (None, "-", caller.key) or not state.authority.key_active(bound):
        return None
    return (f"the worker name {name!r} belongs to another API key; pick another --name, or stop that worker and "
            f"run `ffrtmp nodes forget {name}`")


def revoked(state: MasterState, route: bytes, session: NodeSession, now: float) -> bool:
    """True (and the worker is cut off) when the key a joined worker used has been revoked since."""
    if session.key is None or state.authority.key_active(session.key):
        return False
    why = "this master now requires an API key (--api-key / FFRTMP_API_KEY)" if session.key == "-" \
        else "this worker's API key was revoked"
    state.outbox.refuse(route, 401, why)
    state.lifecycle.node_gone(session, now, f"{session.name} was cut off: {why}")
    log.warning("worker %s cut off: %s", session.name, why, extra={"node": session.name})
    return True


def _register(state: MasterState, route: bytes, body: HelloBody, old: NodeSession | None,
              now: float) -> NodeSession:
    if old is not None and old.route is not None:
        state.registry.unroute(old.route)
        state.logbook.forget_route(old.route)
    session = NodeSession(
        name=body["name"], fingerprint=body["fingerprint"], route=route, slots=body["slots"],
        engines=frozenset(str(e) for e in body["engines"]), version=body["version"],
        encoders=body.get("encoders", {}), labels={str(k): str(v) for k, v in body.get("labels", {}).items()},
        resources=body.get("resources", {}), status="draining" if body.get("draining") else "online",
        last_seen=now, heard_at=state.clock.mono, curve_key=state.sender, prefetch=body.get("prefetch", 0),
        sees=check_sees(body.get("sees")), quality=quality_metrics(body.get("quality", [])),
        recalls=body.get("recall") is True)
    state.registry.join(session, old)
    return session


def _reconcile_running(state: MasterState, session: NodeSession, running: list[Any], now: float) -> None:
    """Adopt the attempts the worker still runs; retry the ones it lost; stop the ones it must not run."""
    reported: dict[str, int] = {}
    for item in running:
        if isinstance(item, dict) and isinstance(item.get("job"), str) and isinstance(item.get("attempt"), int):
            reported[item["job"]] = item["attempt"]
    for job_id, held in list(session.attempts.items()):
        if reported.get(job_id) == held.attempt:
            continue
        if held.stopping:
            state.registry.release(session, job_id)  # it was being stopped, and now it is gone
        else:
            state.lifecycle.attempt_failed(session, job_id, held.attempt, Failure.WORKER_LOST,
                                           f"{session.name} restarted without it", now)
    for job_id, attempt in reported.items():
        if session.runs(job_id, attempt):
            continue
        job = state.store.get_job(job_id)
        # Ours only when the master gave this very attempt to this node, for a tenant its key serves.
        ours = job is not None and attempt >= 1 and job["attempts"] == attempt \
            and state.store.attempt_node(job_id, attempt) == session.name \
            and (session.serves is None or job["tenant"] in session.serves)
        if ours and job is not None and job["status"] in ("assigned", "running") and job["node"] == session.name:
            session.add(job_id, attempt, now, job["queue"], timeout_of(job["timeout"], job["params"]),
                        tenant=job["tenant"], mono=state.clock.mono)
        elif ours and job is not None and job["status"] == "pending" \
                and state.store.readopt_job(job_id, attempt, session.name, now):
            # Given up on while its node was out of reach, but not dispatched again yet: take it back.
            session.add(job_id, attempt, now, job["queue"], timeout_of(job["timeout"], job["params"]),
                        tenant=job["tenant"], mono=state.clock.mono)
            log.info("job %s attempt %d adopted back from %s", job_id, attempt, session.name,
                     extra={"job": job_id, "attempt": attempt, "node": session.name})
        else:
            # Not ours to finish: stop it, and count its slot as taken until the worker confirms.
            state.counters.stale += 1
            if job_id not in session.attempts:
                session.add(job_id, attempt, now, mono=state.clock.mono).stopping = True
            state.outbox.cancel(session.route or b"", job_id, attempt)


def on_heartbeat(state: MasterState, route: bytes, message: Message, now: float) -> None:
    session = state.registry.session_of(route)
    if session is None:
        state.outbox.send(route, Kind.RESYNC)
        return
    body = heartbeat_body(message)
    if isinstance(body.get("resources"), dict):
        session.resources = body["resources"]
    if body.get("draining") is True and session.status == "online":
        session.status = "draining"  # SIGTERM on the worker: no new jobs for it
        state.store.update_node(session.name, status="draining")
    seen: set[str] = set()
    for item in body.get("jobs", []):
        if not isinstance(item, dict) or not isinstance(item.get("job"), str):
            continue
        job_id, attempt = item["job"], item.get("attempt")
        seen.add(job_id)
        if not isinstance(attempt, int) or not session.runs(job_id, attempt):
            state.counters.stale += 1
            state.outbox.cancel(route, job_id, attempt)
            continue
        if item.get("queued") is True:
            session.attempts[job_id].hold(state.clock.mono)  # prefetched, not started: nothing to stall yet
            continue
        _record_progress(state, session, job_id, attempt, item, now)
    grace = 2 * state.config.heartbeat_interval + 2.0
    for job_id, held in list(session.attempts.items()):
        if job_id in seen or state.clock.mono - held.assigned_mono <= grace:
            continue
        if held.stopping:
            state.registry.release(session, job_id)  # stopped as asked: the slot is free again
        else:
            state.lifecycle.attempt_failed(session, job_id, held.attempt, Failure.WORKER_LOST,
                                           f"{session.name} no longer runs it", now)
    reply: dict[str, Any] = {"pending": pending_for(state, session)}
    if acks := state.logbook.take_acks(route):
        reply["logs"] = acks
    state.outbox.send(route, Kind.HEARTBEAT, reply)


def _record_progress(state: MasterState, session: NodeSession, job_id: str, attempt: int, item: dict[str, Any],
                     now: float) -> None:
    metrics = {k: item[k] for k in ("frames", "fps", "speed", "out_time", "bitrate", "size")
               if isinstance(item.get(k), int | float) and not isinstance(item.get(k), bool)}
    progress = item.get("progress")
    progress = min(1.0, max(0.0, float(progress))) if isinstance(progress, int | float) else None
    held = session.attempts[job_id]
    first = not held.progress
    if held.advance({"progress": progress, **metrics}, state.clock.mono):
        if first:  # a lost STARTED must not leave the job 'assigned' while it runs
            state.lifecycle.job_started(job_id, attempt, now)
        state.store.record_progress(job_id, attempt, progress, metrics)


PENDING_CAP = 1000
"""Pending jobs counted per engine for a heartbeat, at most: a count of 200,000 would cost every heartbeat a
scan, and a `--burst` worker only asks whether it is 0."""


def pending_for(state: MasterState, session: NodeSession) -> int:
    """Pending jobs this node's engines could run, up to PENDING_CAP each (a `--burst` worker exits at 0)."""
    if state.pending_cache is None:
        state.pending_cache = {}
    counts = state.pending_cache
    engines = set(session.engines)
    if engines & {"ffmpeg", "gstreamer"}:
        engines.add("auto")
    for engine in engines - counts.keys():
        counts[engine] = state.store.pending_of_engine(engine, PENDING_CAP)
    return sum(counts[engine] for engine in engines)


def on_started(state: MasterState, route: bytes, message: Message, now: float) -> None:
    session, body = state.registry.session_of(route), started_body(message)
    if session is None or not session.runs(body["job"], body["attempt"]):
        state.counters.stale += 1
        return
    # The worker's clock: trusted only within the attempt's lifetime, never in the future.
    held = session.attempts[body["job"]]
    started = min(max(float(body["at"]), held.assigned_at), now)
    if held.queued:  # it waited prefetched: its stall and timeout clocks start now
        held.queued, held.queued_since = False, None
        held.begin(state.clock.mono)
    state.lifecycle.job_started(body["job"], body["attempt"], started)


def on_log(state: MasterState, route: bytes, message: Message, now: float) -> None:
    session, body = state.registry.session_of(route), log_body(message)
    if session is None:  # not joined (yet, or since a master restart): unacknowledged, so resent once welcomed
        state.counters.stale += 1
        return
    lines: list[tuple[int, float, str, str]] = []
    for item in body["lines"][:1000]:
        if (isinstance(item, list) and len(item) == 4 and type(item[0]) is int and -(2**53) <= item[0] <= 2**53
                and isinstance(item[1], int | float) and isinstance(item[2], str) and isinstance(item[3], str)):
            lines.append((item[0], float(item[1]), item[2][:16], item[3][:MAX_LOG_LINE]))
    if not lines:
        return
    if session.runs(body["job"], body["attempt"]):
        state.logbook.append(body["job"], body["attempt"], lines)
    else:
        state.counters.stale += 1
    # Stored, or ignored for good (stale): either way the worker may forget them (after the commit: the
    # acknowledgement leaves on a heartbeat reply, which is only sent once its batch is committed).
    state.logbook.received(route, body["job"], body["attempt"], max(line[0] for line in lines))


def on_result(state: MasterState, route: bytes, message: Message, now: float) -> None:
    body = result_body(message)
    job_id, attempt = body["job"], body["attempt"]
    session = state.registry.session_of(route)
    if session is None:
        # Not joined (a master restarted under a running worker): unacknowledged, the worker lists the
        # attempt in its HELLO, gets it adopted, and sends the result again after WELCOME.
        state.counters.stale += 1
        return
    if _awaits_publishing(body) and session.runs(job_id, attempt):
        # Accepted: the worker now renames its partial file to the output's name and reports again. The job
        # becomes `completed` only on that report, so a completed job never names a file that is absent.
        state.outbox.ack(route, job_id, attempt, publish=True)
        return
    # Acknowledge even a stale or repeated result, so the worker stops resending it.
    state.outbox.ack(route, job_id, attempt)
    if not session.runs(job_id, attempt):
        state.counters.stale += 1
        held = session.attempts.get(job_id)
        if held is not None and held.stopping and held.attempt == attempt:
            state.registry.release(session, job_id)  # the attempt the master stopped has ended: its slot is free
            state.due.soon()
        return
    status = body["status"]
    metrics = state.config.pricing.apply(body.get("metrics") or {}, status)  # cost: master/pricing.py
    # A short attempt folds its STARTED into the RESULT: its start time, trusted within the attempt's life.
    folded = body.get("started_at")
    started = min(max(float(folded), session.attempts[job_id].assigned_at), now) \
        if isinstance(folded, int | float) else None
    if body.get("refused") is True and status == "failed":
        # The worker turned the job down (draining, no free slot) or handed back a prefetched one the master
        # recalled: not the job's fault, so no retry is used. A recalled job goes at once (a node is free).
        delay = 0.0 if body.get("recalled") is True else REFUSAL_DELAY
        state.registry.release(session, job_id)
        state.store.requeue_job(job_id, attempt, now, failure=Failure.WORKER_LOST, error=str(body.get("error")),
                                not_before=state.clock.steady + delay, avoid=session.name, free=True)
        state.due.at(state.clock.steady + delay)
        state.due.soon()
        return
    if status == "completed" and (missing := _unstored_output(state, job_id, attempt, body.get("output_file"))):
        status, body = "failed", {**body, "failure": Failure.ENCODER_ERROR, "error": missing}
    if status in ("completed", "canceled"):
        state.lifecycle.finish_later(Ending(
            job_id, attempt, status, now, metrics=metrics, started_at=started,
            **({"output": body.get("output")} if status == "completed" else
               {"error": body.get("error") or "canceled", "failure": Failure.CANCELED})), session)
    else:
        if started is not None:
            state.lifecycle.job_started(job_id, attempt, started)
        state.lifecycle.attempt_failed(session, job_id, attempt, classify(body.get("failure")),
                                   str(body.get("error") or "the attempt failed")[:2000], now, metrics)
    state.due.soon()


def _unstored_output(state: MasterState, job_id: str, attempt: int, reported: object) -> str | None:
    """Why a completed attempt's `output_file` is not its stored output (docs/files.md), or None when it is (or
    the attempt reported none): only an object that attempt uploaded completes the job."""
    if reported is None:
        return None
    if not isinstance(reported, dict) or not isinstance(reported.get("sha256"), str):
        return "the worker reported a malformed output_file (it needs sha256, size and name)"
    stored = state.store.job_file(job_id, "output", attempt)
    if stored is None or stored["sha256"] != reported["sha256"] or stored["size"] != reported.get("size"):
        return (f"the output file {reported['sha256'][:64]} was not stored by attempt {attempt} (upload it over the "
                "data channel before reporting the result)")
    return None


def _awaits_publishing(body: ResultBody) -> bool:
    """A completed file output still under its attempt's partial name."""
    return body["status"] == "completed" and isinstance(body.get("partial"), str) and body.get("published") is not True


def on_bye(state: MasterState, route: bytes, message: Message, now: float) -> None:
    session = state.registry.session_of(route)
    if session is None:
        return
    state.lifecycle.node_gone(session, now, f"{session.name} left")
    log.info("worker %s left", session.name, extra={"node": session.name})


Handler = Callable[[MasterState, bytes, Message, float], None]

WORKER_HANDLERS: dict[Kind, Handler] = {
    Kind.HELLO: on_hello,
    Kind.HEARTBEAT: on_heartbeat,
    Kind.STARTED: on_started,
    Kind.LOG: on_log,
    Kind.RESULT: on_result,
    Kind.BYE: on_bye,
}
"""What the master does with each kind a worker sends (REQUEST, from clients, is client_gate.on_request)."""
