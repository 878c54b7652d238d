"""F1: a completed job's output always exists. The publish step, driven by scripted peers (no sockets).

The worker keeps a completed attempt's file under its partial name and reports it; the master accepts the
current attempt only (ACK with `publish`), the worker renames and reports again, and only that second report
makes the job `completed`. A stale attempt is acknowledged without `publish`, so its file never becomes the
output and it deletes only its own partial.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.protocol import Kind, Message, decode, encode, unbatch
from ffrtmp.worker.agent import Agent, WorkerOptions
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.outputs import OutputPlan, plan, resolve_output
from ffrtmp.worker.runner import Attempt, Event
from tests.test_coordinator import Cluster

# ---- the worker, with a scripted master ----------------------------------------------------------------


class Worker:
    """An agent whose frames are collected instead of sent."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.agent = Agent(WorkerOptions(name="w", fingerprint="f", work_dir=work),
                           Capabilities(engines=["ffmpeg", "null"], ffmpeg=None, gstreamer=None))
        self.sent: list[Message] = []
        self.agent._send = self._collect  # type: ignore[method-assign]
        self.welcome(publish=True)

    def welcome(self, publish: bool) -> None:
        body: dict[str, Any] = {"node": "w", "heartbeat_interval": 1.0, "node_timeout": 10.0}
        self.hear(Kind.WELCOME, {**body, "publish": True} if publish else body)
        self.sent = [m for m in self.sent if m.kind is not Kind.HEARTBEAT]

    def _collect(self, frame: bytes) -> bool:
        message = decode(frame)
        self.sent += unbatch(message) if message.kind is Kind.BATCH else [message]
        return True

    def results(self) -> list[dict[str, Any]]:
        found = [m.body for m in self.sent if m.kind is Kind.RESULT]
        self.sent = [m for m in self.sent if m.kind is not Kind.RESULT]
        return found

    def complete(self, job: str, attempt: int, content: bytes) -> OutputPlan:
        """An attempt whose encode ended well: its file is written under its partial name."""
        final = resolve_output(self.work, (), "acme", job, None, ".mp4")
        files = plan(final, job, attempt)
        Path(files.partial).write_bytes(content)
        self.agent.attempts[job] = Attempt(job=job, attempt=attempt, spec={"engine": "ffmpeg"}, received_at=0.0)
        self.agent.emit(Event("finished", job, attempt, {"status": "completed", "metrics": {},
                                                         "output": files.final, "partial": files.partial}))
        self.agent.drain_events()
        self.agent.send_results()
        return files

    def hear(self, kind: Kind, body: dict[str, Any], silent_for: float = 0.0) -> None:
        self.agent.silent_for = silent_for
        self.agent.on_frame(encode(kind, body), 0.0)
        self.agent.send_results()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    one = Worker(tmp_path / "work")
    yield one
    one.agent.shutdown()  # closes its wake pipe (again: harmless)


def test_the_file_keeps_its_partial_name_until_the_master_accepts_it(worker: Worker) -> None:
    files = worker.complete("j1", 1, b"attempt 1")
    [first] = worker.results()
    assert (first["status"], first["output"], first["partial"]) == ("completed", files.final, files.partial)
    assert "published" not in first
    assert not Path(files.final).exists() and Path(files.partial).exists()

    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1, "publish": True})
    [second] = worker.results()
    assert second["published"] is True and second["status"] == "completed" and "partial" not in second
    assert Path(files.final).read_bytes() == b"attempt 1" and not Path(files.partial).exists()

    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1, "publish": True})  # an answer to a resent RESULT
    assert worker.results() == [] and Path(files.final).read_bytes() == b"attempt 1"
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})
    assert worker.agent.unacked == {}


def test_a_stale_attempt_deletes_only_its_own_partial(worker: Worker) -> None:
    """The zombie twin: attempt 2 published the output; attempt 1 ends late and is only acknowledged."""
    newer = plan(resolve_output(worker.work, (), "acme", "j1", None, ".mp4"), "j1", 2)
    Path(newer.final).write_bytes(b"attempt 2, published")
    stale = worker.complete("j1", 1, b"attempt 1, stale")
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1})  # no `publish`: the master fenced it
    assert Path(newer.final).read_bytes() == b"attempt 2, published"
    assert not Path(stale.partial).exists()
    assert worker.agent.unacked == {} and worker.agent.publishing == {}


def test_an_answer_that_waited_out_a_long_silence_is_not_trusted(worker: Worker) -> None:
    """Frames read after a SIGSTOP or a partition may predate the master giving the job away: ask again."""
    files = worker.complete("j1", 1, b"attempt 1")
    worker.results()
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1, "publish": True}, silent_for=worker.agent.node_timeout)
    [again] = worker.results()
    assert again["partial"] == files.partial and "published" not in again
    assert not Path(files.final).exists() and Path(files.partial).exists()


def test_a_partial_gone_before_publishing_fails_the_attempt(worker: Worker) -> None:
    files = worker.complete("j1", 1, b"attempt 1")
    worker.results()
    os.unlink(files.partial)
    worker.hear(Kind.ACK, {"job": "j1", "attempt": 1, "publish": True})
    [failed] = worker.results()
    assert failed["status"] == "failed" and failed["failure"] == "encoder_error"
    assert files.final in failed["error"] and "published" not in failed


def test_shutdown_discards_partials_never_accepted(worker: Worker) -> None:
    files = worker.complete("j1", 1, b"attempt 1")
    worker.agent.shutdown()
    assert not Path(files.partial).exists() and not Path(files.final).exists()


def test_an_older_master_that_records_the_first_result_gets_the_file_renamed_at_once(worker: Worker) -> None:
    """Workers may be upgraded before their master: one whose WELCOME does not offer `publish`."""
    pending = worker.complete("j1", 1, b"finished before the master restarted")
    worker.results()
    worker.welcome(publish=False)
    [resent] = worker.results()
    assert resent["published"] is True and Path(pending.final).exists() and not Path(pending.partial).exists()
    files = worker.complete("j2", 1, b"finished under the older master")
    [result] = worker.results()
    assert result["published"] is True and "partial" not in result
    assert Path(files.final).read_bytes() == b"finished under the older master"


# ---- the master, with a scripted worker ----------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


FINAL = "/w/outputs/default/J/J.mp4"
PARTIAL = "/w/outputs/default/J/J.J.attempt-1.partial.mp4"


def acks(cluster: Cluster, route: bytes) -> list[dict[str, Any]]:
    return [m.body for m in cluster.net.take(route, Kind.ACK)]


def test_the_master_records_completed_only_once_the_output_is_published(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(engine="ffmpeg", codec="h264")
    cluster.deliver(b"w1", Kind.STARTED, {"job": job_id, "attempt": 1, "at": cluster.now})
    cluster.result(b"w1", job_id, 1, output=FINAL, partial=PARTIAL)
    assert acks(cluster, b"w1") == [{"job": job_id, "attempt": 1, "publish": True}]
    assert cluster.job(job_id)["status"] == "running", "not completed while the file has its partial name"
    cluster.result(b"w1", job_id, 1, output=FINAL, partial=PARTIAL)  # resent before the answer came
    assert acks(cluster, b"w1") == [{"job": job_id, "attempt": 1, "publish": True}]
    cluster.result(b"w1", job_id, 1, output=FINAL, published=True)
    assert acks(cluster, b"w1") == [{"job": job_id, "attempt": 1}]
    job = cluster.job(job_id)
    assert job["status"] == "completed" and job["output"] == FINAL
    cluster.result(b"w1", job_id, 1, output=FINAL, partial=PARTIAL)  # a late duplicate: not published again
    assert acks(cluster, b"w1") == [{"job": job_id, "attempt": 1}]
    assert [h["status"] for h in cluster.job(job_id)["history"]].count("completed") == 1


def test_a_stale_attempt_is_never_told_to_publish(cluster: Cluster) -> None:
    cluster.hello(b"w1", "alpha")
    job_id = cluster.submit(engine="ffmpeg", codec="h264")
    cluster.hello(b"w2", "beta")
    cluster.now += 11  # alpha is silent past the node timeout: its attempt goes to beta
    cluster.deliver(b"w2", Kind.HEARTBEAT, {"jobs": []})
    cluster.coordinator.tick(cluster.now)
    assert [m.body["attempt"] for m in cluster.net.take(b"w2", Kind.JOB)] == [2]
    cluster.hello(b"w1", "alpha", running=[{"job": job_id, "attempt": 1}])  # a result waits for the rejoin
    cluster.result(b"w1", job_id, 1, output=FINAL, partial=PARTIAL)
    assert acks(cluster, b"w1") == [{"job": job_id, "attempt": 1}]
    cluster.result(b"w1", job_id, 1, output=FINAL, published=True)  # a forged "published" counts no more
    assert cluster.job(job_id)["status"] != "completed"
