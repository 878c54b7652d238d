"""Random and mutated messages through decode and every handler of the master and the worker.

Properties: no exception escapes a handler, and every client request whose id can be read gets an answer.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffrtmp.protocol import SCHEMAS, Kind
from ffrtmp.worker.agent import Agent, WorkerExit, WorkerOptions
from ffrtmp.worker.capabilities import Capabilities
from tests.test_coordinator import Cluster

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["", "0" * 32, "a" * 32, "alpha", "ffmpeg", "null", "completed", "failed",
                                     "h264", "320x180", "../../etc/passwd", "rtmp://x/y", "; rm -rf /"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)
OPS = ["submit", "get", "list", "cancel", "retry", "logs", "logs.follow", "nodes.list", "nodes.get", "nodes.drain",
       "stats", "ping", "nope"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message shaped like a real one: a known kind, its fields with random (often wrong) values."""
    kind = draw(st.sampled_from(list(Kind)))
    body: dict[str, Any] = {}
    for field in SCHEMAS[kind]:
        if draw(st.integers(0, 9)) > 0:
            body[field] = draw(values)
    if kind is Kind.REQUEST:
        body["rid"] = draw(st.text(min_size=1, max_size=8))
        body["op"] = draw(st.sampled_from(OPS))
        body["args"] = draw(st.dictionaries(st.sampled_from(["id", "jobs", "status", "limit", "attempt", "tail",
                                                             "name", "queue", "node"]), values, max_size=4))
    return {"v": draw(st.sampled_from([1, 1, 1, 2, "1", None])), "k": kind.value, "b": body}


def frames(draw_json: dict[str, Any], raw: bytes) -> list[bytes]:
    return [json.dumps(draw_json).encode(), raw]


@SETTINGS
@given(message=messages(), raw=st.binary(max_size=200))
def test_the_master_survives_anything_and_answers_every_request(tmp_path_factory: Any, message: dict[str, Any],
                                                                 raw: bytes) -> None:
    cluster = _cluster(tmp_path_factory)
    cluster.now += 1.0  # time passes between examples (rate limits refill)
    for frame in frames(message, raw):
        cluster.coordinator.handle_batch([(b"fuzz", frame, None)], cluster.now)
        cluster.coordinator.tick(cluster.now)
    body = message["b"]
    if message["k"] == "request" and message["v"] == 1 and isinstance(body.get("rid"), str):
        answers = [m for r, m in cluster.net.sent if r == b"fuzz" and m.kind in (Kind.REPLY, Kind.PARTIAL)
                   and m.body["rid"] == body["rid"][:64]]
        assert answers, f"no answer to {message}"
    cluster.net.sent.clear()
    assert cluster.request("ping")["status"] == 200, "the master still serves"


_CLUSTERS: dict[str, Cluster] = {}


def _cluster(factory: Any) -> Cluster:
    """One master for the whole property run (each example adds to its state, as real traffic would)."""
    if "master" not in _CLUSTERS:
        cluster = Cluster(Path(factory.mktemp("fuzz")))
        cluster.hello(b"worker", "fuzzed", slots=4)
        cluster.submit()
        _CLUSTERS["master"] = cluster
    return _CLUSTERS["master"]


@SETTINGS
@given(message=messages(), raw=st.binary(max_size=200))
def test_the_worker_survives_anything_the_master_could_send(tmp_path_factory: Any, message: dict[str, Any],
                                                            raw: bytes) -> None:
    agent = _agent(tmp_path_factory)
    for frame in frames(message, raw):
        with contextlib.suppress(WorkerExit):  # REFUSED ends the worker on purpose
            agent.on_frame(frame, 0.0)
    agent.drain_events()
    for attempt in list(agent.attempts.values()):
        if attempt.thread is not None:
            attempt.thread.join(5)
    agent.drain_events()


_AGENTS: dict[str, Agent] = {}


def _agent(factory: Any) -> Agent:
    if "agent" not in _AGENTS:
        work = Path(factory.mktemp("fuzz-worker"))
        # No ffmpeg: a fuzzed job that passes every check fails at once instead of encoding.
        capabilities = Capabilities(engines=["ffmpeg", "null"], ffmpeg=None, gstreamer=None)
        _AGENTS["agent"] = Agent(WorkerOptions(name="fuzz", fingerprint="f", work_dir=work, slots=4), capabilities)
    return _AGENTS["agent"]


def test_mutated_valid_frames_never_crash_the_master(tmp_path: Path) -> None:
    """Byte-level mutations of real frames: truncation, bit flips, duplication."""
    cluster = Cluster(tmp_path)
    cluster.hello(b"w", "alpha")
    job_id = cluster.submit()
    valid = [json.dumps({"v": 1, "k": "result", "b": {"job": job_id, "attempt": 1, "status": "completed",
                                                       "at": 1.0}}).encode(),
             json.dumps({"v": 1, "k": "request", "b": {"rid": "r", "op": "get", "args": {"id": job_id}}}).encode()]
    rng = random.Random(5)
    for _ in range(2000):
        frame = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(frame))
            action = rng.randrange(3)
            if action == 0:
                frame[position] = rng.randrange(256)
            elif action == 1:
                del frame[position:]
            else:
                frame[position:position] = frame[:rng.randrange(1, 8)]
            if not frame:
                frame = bytearray(b"{")
        cluster.coordinator.handle_batch([(rng.choice([b"w", b"x"]), bytes(frame), None)], cluster.now)
    assert cluster.request("ping")["status"] == 200
