"""Engine processes die with their worker: the prctl preexec on its own, then a real worker SIGKILLed while
its real ffmpeg waits on an input that never sends (so nothing but the parent-death signal could end it)."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ffrtmp.local import LocalCluster
from ffrtmp.worker import childdeath
from ffrtmp.worker.childdeath import die_with_parent
from tests.conftest import eventually
from tests.test_reliability import encoders_of, gone

linux_only = pytest.mark.skipif(not childdeath.available(), reason="needs prctl (Linux)")

MIDDLE = textwrap.dedent("""
    import subprocess, sys, time
    from ffrtmp.worker.childdeath import die_with_parent
    child = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=die_with_parent())
    print(child.pid, flush=True)
    time.sleep(60)
""")


@linux_only
def test_a_child_started_with_the_preexec_dies_when_its_parent_is_killed() -> None:
    with subprocess.Popen([sys.executable, "-c", MIDDLE], stdout=subprocess.PIPE) as middle:
        try:
            assert middle.stdout is not None
            child = psutil.Process(int(middle.stdout.readline()))
            assert child.name() == "sleep" and child.is_running()
            middle.kill()
            middle.wait(timeout=10)
            eventually(lambda: gone([child]), timeout=5, message="the orphaned sleep to die with its parent")
        finally:
            middle.kill()


@linux_only
def test_a_child_whose_parent_died_before_prctl_kills_itself_before_exec() -> None:
    # pid 1 is never this test's pid: the child sees a parent other than the one expected, as after that race.
    done = subprocess.run(["true"], preexec_fn=die_with_parent(parent=1), timeout=10)
    assert done.returncode == -signal.SIGKILL
    assert subprocess.run(["true"], preexec_fn=die_with_parent(), timeout=10).returncode == 0


def test_without_prctl_it_is_a_no_op_said_once(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(childdeath, "_PRCTL", None)
    monkeypatch.setattr(childdeath, "_said_unavailable", False)
    with caplog.at_level(logging.INFO, logger="ffrtmp.worker"):
        assert die_with_parent() is None and die_with_parent() is None
    assert [r.message for r in caplog.records].count(
        "no prctl on this platform: an engine process may outlive a worker that is killed") == 1


# ---- a real worker ----------------------------------------------------------------------------------


@pytest.fixture
def silent_input() -> Iterator[tuple[str, socket.socket]]:
    """A TCP input that accepts ffmpeg's connection and never sends a byte: ffmpeg blocks reading it and writes
    nothing, so no broken pipe to a dead worker could end it either."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", listener


@pytest.mark.slow
@linux_only
def test_ffmpeg_dies_within_seconds_when_its_worker_is_sigkilled(tmp_path: Path, ffmpeg: str,
                                                                 silent_input: tuple[str, socket.socket]) -> None:
    url, listener = silent_input
    with LocalCluster(tmp_path / "cluster", master_args=["--heartbeat-interval", "200ms"]) as cluster:
        cluster.start_master()
        worker = cluster.start_worker("w1", "--allow-private-network")
        cluster.wait_for_nodes(["w1"])
        with cluster.client() as client:
            job_id = client.submit_many([{"scenario": "stalled", "engine": "ffmpeg", "input": url,
                                          "resolution": "160x120", "duration": 60, "codec": "h264"}])[0]
            listener.settimeout(30)
            connection, _ = listener.accept()  # ffmpeg is running, waiting for the first byte
            with connection:
                encoders = eventually(lambda: encoders_of(job_id), message="the job's ffmpeg")
                assert all(p.is_running() for p in encoders)
                cluster.kill(worker, signal.SIGKILL)
                worker.wait(timeout=10)
                eventually(lambda: gone(encoders), timeout=3, message="ffmpeg to die with its worker")
                connection.settimeout(5)
                assert connection.recv(1) == b"", "the killed ffmpeg's connection is closed"


SETPRIV_MIDDLE = textwrap.dedent("""
    import subprocess, sys, time
    from ffrtmp.worker.childdeath import engine_spawn
    prefix, preexec = engine_spawn()
    assert prefix and preexec is None, (prefix, preexec)
    child = subprocess.Popen([*prefix, "sleep", "60"], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(60)
""")


@linux_only
@pytest.mark.skipif(childdeath.setpriv_prefix() is None, reason="needs util-linux setpriv --pdeathsig")
def test_an_engine_started_through_setpriv_dies_when_its_parent_is_killed() -> None:
    # the way the runner starts engines where setpriv works: no preexec_fn, so Python keeps vfork
    with subprocess.Popen([sys.executable, "-c", SETPRIV_MIDDLE], stdout=subprocess.PIPE) as middle:
        try:
            assert middle.stdout is not None
            child = psutil.Process(int(middle.stdout.readline()))
            eventually(lambda: child.name() == "sleep", timeout=5, message="setpriv to exec sleep")
            middle.kill()
            middle.wait(timeout=10)
            eventually(lambda: gone([child]), timeout=5, message="the orphaned sleep to die with its parent")
        finally:
            middle.kill()


def test_without_setpriv_the_prctl_preexec_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(childdeath, "_setpriv_known", True)
    monkeypatch.setattr(childdeath, "_setpriv", None)
    prefix, preexec = childdeath.engine_spawn()
    assert prefix == [] and (preexec is not None) == childdeath.available()
