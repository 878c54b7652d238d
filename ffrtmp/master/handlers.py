"""Messages from workers: one function per kind (HELLO, HEARTBEAT, STARTED, LOG, RESULT, BYE).

Each takes the coordinator, the sender's route, the decoded message and the time. Everything a worker says
about an attempt is fenced: it counts only while that attempt is the one the master has the node running.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ffrtmp.errors import InvalidInput, NotAuthorized
from ffrtmp.failures import Failure, classify
from ffrtmp.master.auth import Principal
from ffrtmp.master.nodes import NodeSession, check_hello
from ffrtmp.master.store import Ending
from ffrtmp.protocol import Kind, Message, encode

if TYPE_CHECKING:
    from ffrtmp.master.coordinator import Coordinator

log = logging.getLogger("ffrtmp.master")

MAX_LOG_LINE = 8192
REFUSAL_DELAY = 1.0
"""A job a worker turned down waits this long before the next dispatch try (no hot loop)."""


def on_hello(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    body = message.body
    try:
        caller = coordinator.authority.authenticate(body.get("key"))
        if not caller.may("worker"):
            raise NotAuthorized(f"a {caller.role} key cannot run a worker (it needs the worker or admin role)")
    except NotAuthorized as exc:
        coordinator.refuse(route, 401, str(exc))
        return
    try:
        check_hello(body)
    except InvalidInput as exc:
        coordinator.refuse(route, 400, str(exc))
        return
    name = body["name"]
    old = coordinator.nodes.get(name)
    problem = _name_refused(coordinator, caller, name, old)
    if problem is not None:
        coordinator.refuse(route, 401, problem)
        return
    if old is not None and old.route not in (None, route) and old.status != "offline" \
            and coordinator.probe(old.route):
        # The incumbent's connection is still up: a second live worker must not steal its identity.
        coordinator.refuse(route, 409, f"a worker named {name!r} is already connected; stop it or pick another --name")
        return
    session = _register(coordinator, route, body, old, now)
    session.key, session.serves = caller.key, caller.serves
    _reconcile_running(coordinator, session, body.get("running", []), now)
    coordinator.store.upsert_node(session.record(), now)
    config = coordinator.config
    coordinator.queue(route, encode(Kind.WELCOME, {"node": name, "heartbeat_interval": config.heartbeat_interval,
                                                   "node_timeout": config.node_timeout, "publish": True}))
    log.info("worker %s joined (%d slots, engines %s)", name, session.slots, ",".join(sorted(session.engines)),
             extra={"node": name})
    coordinator.dirty = True


def _name_refused(coordinator: Coordinator, caller: Principal, name: str, old: NodeSession | None) -> str | None:
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
        row = coordinator.store.get_node(name)
        bound = row.get("api_key") if row is not None else None
    if bound in (None, "-", caller.key) or not coordinator.authority.key_active(bound):
        return None
    return (f"the worker name {name!r} belongs to another API key; pick another --name, or stop that worker and "
            f"run `ffrtmp nodes forget {name}`")


def revoked(coordinator: Coordinator, route: bytes, session: NodeSession, now: float) -> bool:
    """True (and the worker is cut off) when the key a joined worker used has been revoked since."""
    if session.key is None or coordinator.authority.key_active(session.key):
        return False
    why = "this master now requires an API key (--api-key / FFRTMP_API_KEY)" if session.key == "-" \
        else "this worker's API key was revoked"
    coordinator.refuse(route, 401, why)
    coordinator.node_gone(session, now, f"{session.name} was cut off: {why}")
    log.warning("worker %s cut off: %s", session.name, why, extra={"node": session.name})
    return True


def _register(coordinator: Coordinator, route: bytes, body: dict[str, Any], old: NodeSession | None,
              now: float) -> NodeSession:
    if old is not None and old.route is not None:
        coordinator.by_route.pop(old.route, None)
        coordinator.logbook.forget_route(old.route)
    session = NodeSession(
        name=body["name"], fingerprint=body["fingerprint"], route=route, slots=body["slots"],
        engines=frozenset(str(e) for e in body["engines"]), version=body["version"],
        encoders=body.get("encoders", {}), labels={str(k): str(v) for k, v in body.get("labels", {}).items()},
        resources=body.get("resources", {}), status="draining" if body.get("draining") else "online",
        last_seen=now, heard_at=coordinator.mono, curve_key=coordinator.sender, prefetch=body.get("prefetch", 0))
    if old is not None:
        session.attempts = old.attempts
    coordinator.nodes[session.name] = session
    coordinator.by_route[route] = session.name
    return session


def _reconcile_running(coordinator: Coordinator, session: NodeSession, running: list[Any], now: float) -> None:
    """Adopt the attempts the worker still runs; retry the ones it lost; stop the ones it must not run."""
    reported: dict[str, int] = {}
    for item in running:
        if isinstance(item, dict) and isinstance(item.get("job"), str) and isinstance(item.get("attempt"), int):
            reported[item["job"]] = item["attempt"]
    for job_id, state in list(session.attempts.items()):
        if reported.get(job_id) == state.attempt:
            continue
        if state.stopping:
            session.remove(job_id)  # it was being stopped, and now it is gone
        else:
            coordinator.attempt_failed(session, job_id, state.attempt, Failure.WORKER_LOST,
                                 f"{session.name} restarted without it", now)
    for job_id, attempt in reported.items():
        if session.runs(job_id, attempt):
            continue
        job = coordinator.store.get_job(job_id)
        # Ours only when the master gave this very attempt to this node, for a tenant its key serves.
        ours = job is not None and attempt >= 1 and job["attempts"] == attempt \
            and coordinator.store.attempt_node(job_id, attempt) == session.name \
            and (session.serves is None or job["tenant"] in session.serves)
        if ours and job is not None and job["status"] in ("assigned", "running") and job["node"] == session.name:
            session.add(job_id, attempt, now, job["queue"], coordinator.timeout_of(job["timeout"], job["params"]),
                        tenant=job["tenant"], mono=coordinator.mono)
        elif ours and job is not None and job["status"] == "pending" \
                and coordinator.store.readopt_job(job_id, attempt, session.name, now):
            # Given up on while its node was out of reach, but not dispatched again yet: take it back.
            session.add(job_id, attempt, now, job["queue"], coordinator.timeout_of(job["timeout"], job["params"]),
                        tenant=job["tenant"], mono=coordinator.mono)
            log.info("job %s attempt %d adopted back from %s", job_id, attempt, session.name,
                     extra={"job": job_id, "attempt": attempt, "node": session.name})
        else:
            # Not ours to finish: stop it, and count its slot as taken until the worker confirms.
            coordinator.counters.stale += 1
            if job_id not in session.attempts:
                session.add(job_id, attempt, now, mono=coordinator.mono).stopping = True
            coordinator.queue(session.route or b"", encode(Kind.CANCEL, {"job": job_id, "attempt": attempt}))


def on_heartbeat(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    session = coordinator.session_of(route)
    if session is None:
        coordinator.queue(route, encode(Kind.RESYNC))
        return
    body = message.body
    if isinstance(body.get("resources"), dict):
        session.resources = body["resources"]
    if body.get("draining") is True and session.status == "online":
        session.status = "draining"  # SIGTERM on the worker: no new jobs for it
        coordinator.store.update_node(session.name, status="draining")
    seen: set[str] = set()
    for item in body.get("jobs", []):
        if not isinstance(item, dict) or not isinstance(item.get("job"), str):
            continue
        job_id, attempt = item["job"], item.get("attempt")
        seen.add(job_id)
        if not isinstance(attempt, int) or not session.runs(job_id, attempt):
            coordinator.counters.stale += 1
            coordinator.queue(route, encode(Kind.CANCEL, {"job": job_id, "attempt": attempt}))
            continue
        if item.get("queued") is True:
            session.attempts[job_id].hold(coordinator.mono)  # prefetched, not started: nothing to stall yet
            continue
        _record_progress(coordinator, session, job_id, attempt, item, now)
    grace = 2 * coordinator.config.heartbeat_interval + 2.0
    for job_id, state in list(session.attempts.items()):
        if job_id in seen or coordinator.mono - state.assigned_mono <= grace:
            continue
        if state.stopping:
            session.remove(job_id)  # stopped as asked: the slot is free again
        else:
            coordinator.attempt_failed(session, job_id, state.attempt, Failure.WORKER_LOST,
                                 f"{session.name} no longer runs it", now)
    reply: dict[str, Any] = {"pending": _pending_for(coordinator, session)}
    if acks := coordinator.logbook.take_acks(route):
        reply["logs"] = acks
    coordinator.queue(route, encode(Kind.HEARTBEAT, reply))


def _record_progress(coordinator: Coordinator, session: NodeSession, job_id: str, attempt: int, item: dict[str, Any],
                     now: float) -> None:
    metrics = {k: item[k] for k in ("frames", "fps", "speed", "out_time", "bitrate", "size")
               if isinstance(item.get(k), int | float) and not isinstance(item.get(k), bool)}
    progress = item.get("progress")
    progress = min(1.0, max(0.0, float(progress))) if isinstance(progress, int | float) else None
    state = session.attempts[job_id]
    first = not state.progress
    if state.advance({"progress": progress, **metrics}, coordinator.mono):
        if first:  # a lost STARTED must not leave the job 'assigned' while it runs
            coordinator.job_started(job_id, attempt, now)
        coordinator.store.record_progress(job_id, attempt, progress, metrics)


PENDING_CAP = 1000
"""Pending jobs counted per engine for a heartbeat, at most: a count of 200,000 would cost every heartbeat a
scan, and a `--burst` worker only asks whether it is 0."""


def _pending_for(coordinator: Coordinator, session: NodeSession) -> int:
    """Pending jobs this node's engines could run, up to PENDING_CAP each (a `--burst` worker exits at 0)."""
    if coordinator._pending_cache is None:
        coordinator._pending_cache = {}
    counts = coordinator._pending_cache
    engines = set(session.engines)
    if engines & {"ffmpeg", "gstreamer"}:
        engines.add("auto")
    for engine in engines - counts.keys():
        counts[engine] = coordinator.store.pending_of_engine(engine, PENDING_CAP)
    return sum(counts[engine] for engine in engines)


def on_started(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    session, body = coordinator.session_of(route), message.body
    if session is None or not session.runs(body["job"], body["attempt"]):
        coordinator.counters.stale += 1
        return
    # The worker's clock: trusted only within the attempt's lifetime, never in the future.
    state = session.attempts[body["job"]]
    started = min(max(float(body["at"]), state.assigned_at), now)
    if state.queued:  # it waited prefetched: its stall and timeout clocks start now
        state.queued = False
        state.begin(coordinator.mono)
    coordinator.job_started(body["job"], body["attempt"], started)


def on_log(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    session, body = coordinator.session_of(route), message.body
    if session is None:  # not joined (yet, or since a master restart): unacknowledged, so resent once welcomed
        coordinator.counters.stale += 1
        return
    lines: list[tuple[int, float, str, str]] = []
    for item in body["lines"][:1000]:
        if (isinstance(item, list) and len(item) == 4 and type(item[0]) is int and -(2**53) <= item[0] <= 2**53
                and isinstance(item[1], int | float) and isinstance(item[2], str) and isinstance(item[3], str)):
            lines.append((item[0], float(item[1]), item[2][:16], item[3][:MAX_LOG_LINE]))
    if not lines:
        return
    if session.runs(body["job"], body["attempt"]):
        coordinator.logbook.append(body["job"], body["attempt"], lines)
    else:
        coordinator.counters.stale += 1
    # Stored, or ignored for good (stale): either way the worker may forget them (after the commit: the
    # acknowledgement leaves on a heartbeat reply, which is only sent once its batch is committed).
    coordinator.logbook.received(route, body["job"], body["attempt"], max(line[0] for line in lines))


def on_result(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    body = message.body
    job_id, attempt = body["job"], body["attempt"]
    session = coordinator.session_of(route)
    if session is None:
        # Not joined (a master restarted under a running worker): unacknowledged, the worker lists the
        # attempt in its HELLO, gets it adopted, and sends the result again after WELCOME.
        coordinator.counters.stale += 1
        return
    if _awaits_publishing(body) and session.runs(job_id, attempt):
        # Accepted: the worker now renames its partial file to the output's name and reports again. The job
        # becomes `completed` only on that report, so a completed job never names a file that is absent.
        coordinator.ack(route, job_id, attempt, publish=True)
        return
    # Acknowledge even a stale or repeated result, so the worker stops resending it.
    coordinator.ack(route, job_id, attempt)
    if not session.runs(job_id, attempt):
        coordinator.counters.stale += 1
        state = session.attempts.get(job_id)
        if state is not None and state.stopping and state.attempt == attempt:
            session.remove(job_id)  # the attempt the master stopped has ended: its slot is free
            coordinator.dirty = True
        return
    status = body["status"]
    metrics = body.get("metrics") or {}
    # A short attempt folds its STARTED into the RESULT: its start time, trusted within the attempt's life.
    folded = body.get("started_at")
    started = min(max(float(folded), session.attempts[job_id].assigned_at), now) \
        if isinstance(folded, int | float) else None
    if body.get("refused") is True and status == "failed":
        # The worker turned the job down (draining, no free slot): not the job's fault, so no retry is used.
        session.remove(job_id)
        coordinator.store.requeue_job(job_id, attempt, now, failure=Failure.WORKER_LOST, error=str(body.get("error")),
                                      not_before=coordinator.steady + REFUSAL_DELAY, avoid=session.name, free=True)
        coordinator.retry_due(coordinator.steady + REFUSAL_DELAY)
        coordinator.dirty = True
        return
    if status in ("completed", "canceled"):
        coordinator.finish_later(Ending(
            job_id, attempt, status, now, metrics=metrics, started_at=started,
            **({"output": body.get("output")} if status == "completed" else
               {"error": body.get("error") or "canceled", "failure": Failure.CANCELED})), session)
    else:
        if started is not None:
            coordinator.job_started(job_id, attempt, started)
        coordinator.attempt_failed(session, job_id, attempt, classify(body.get("failure")),
                                   str(body.get("error") or "the attempt failed")[:2000], now, metrics)
    coordinator.dirty = True


def _awaits_publishing(body: dict[str, Any]) -> bool:
    """A completed file output still under its attempt's partial name."""
    return body["status"] == "completed" and isinstance(body.get("partial"), str) and body.get("published") is not True


def on_bye(coordinator: Coordinator, route: bytes, message: Message, now: float) -> None:
    session = coordinator.session_of(route)
    if session is None:
        return
    coordinator.node_gone(session, now, f"{session.name} left")
    log.info("worker %s left", session.name, extra={"node": session.name})
