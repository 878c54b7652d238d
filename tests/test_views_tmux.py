"""The live views tried as a person would: in a real terminal (tmux), read back with capture-pane.

And the same commands piped: plain text without colour codes, or JSON.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ffrtmp.local import LocalCluster
from tests.conftest import cancel_unfinished, eventually

pytestmark = pytest.mark.slow

SLOW = {"scenario": "watch-me", "resolution": "640x360", "fps": 30, "duration": 60, "codec": "h264",
        "bitrate": "800k", "preset": "slower"}


@pytest.fixture(scope="module")
def tmux() -> Iterator[str]:
    path = shutil.which("tmux")
    if path is None:
        import os

        if os.environ.get("CI"):
            pytest.fail("tmux is required in CI (scripts/test installs it)")
        pytest.skip("tmux not installed")
    # One session kept for the module: when a test kills the last session, the tmux server exits, and a
    # new-session sent while it is exiting fails (seen: exit status 1, about one module run in five).
    keeper = f"ffrtmp-keeper-{uuid.uuid4().hex[:8]}"
    subprocess.run([path, "new-session", "-d", "-s", keeper, "sleep 3600"], check=True)
    try:
        yield path
    finally:
        subprocess.run([path, "kill-session", "-t", keeper], check=False, capture_output=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("views")) as local:
        local.start_master()
        local.start_worker("viewer-1", "--input-root", str(local.root), slots=1)
        local.start_worker("viewer-2", "--input-root", str(local.root), slots=1)
        local.wait_for_nodes(["viewer-1", "viewer-2"])
        with local.client() as client:
            client.submit_many([{"scenario": "done-already", "engine": "null"}] * 3 + [SLOW])
            eventually(lambda: any(j["status"] == "running" and (j["progress"] or 0) > 0 for j in client.list()),
                       timeout=60, message="a job in progress")
        yield local
        cancel_unfinished(local)


class Pane:
    def __init__(self, tmux: str, command: list[str], env: dict[str, str]) -> None:
        self.tmux = tmux
        self.session = f"ffrtmp-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("FFRTMP", "PYTHON")))
        # A tmux started without a terminal exports COLUMNS=80 LINES=24; the pane itself is wider.
        shell = f"unset COLUMNS LINES; export {exports}; {shlex.join(command)}; sleep 30"
        subprocess.run([tmux, "new-session", "-d", "-s", self.session, "-x", "160", "-y", "45", shell], check=True)

    def text(self) -> str:
        done = subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.session], capture_output=True, text=True,
                              check=False)
        return done.stdout

    def wait_for(self, *needles: str, timeout: float) -> str:
        """The screen, once it shows every one of `needles`."""
        def shown() -> str | None:
            text = self.text()
            return text if all(needle in text for needle in needles) else None

        found: str = eventually(shown, timeout=timeout, message=f"{needles} on screen")
        return found

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], capture_output=True, check=False)


def ffrtmp_argv(cluster: LocalCluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "ffrtmp", *args, *cluster.connection_args()]


def test_jobs_list_watch_shows_a_live_table_with_progress(cluster: LocalCluster, tmux: str) -> None:
    pane = Pane(tmux, ffrtmp_argv(cluster, "jobs", "list", "--watch"), cluster.env)
    try:
        screen = pane.wait_for("watch-me", "%", "viewer-", "completed", "ETA", timeout=20)
        assert "STATUS" in screen and "PROGRESS" in screen and "ETA" in screen
        assert "running" in screen and "completed" in screen
        assert "█" in screen, "a progress bar is drawn"
        assert "viewer-" in screen
    finally:
        pane.close()


def test_top_shows_nodes_queues_and_throughput(cluster: LocalCluster, tmux: str) -> None:
    pane = Pane(tmux, ffrtmp_argv(cluster, "top"), cluster.env)
    try:
        # A live view redraws in place: wait for one whole frame, not the first lines of one.
        screen = pane.wait_for("viewer-1", "viewer-2", "slots busy", "completed/min", "failure rate", "live",
                               "default", "batch", timeout=20)
        assert "queue depth" in screen
    finally:
        pane.close()


def test_submit_wait_draws_a_progress_bar(cluster: LocalCluster, tmux: str) -> None:
    pane = Pane(tmux, ffrtmp_argv(cluster, "jobs", "submit", "--scenario", "bar", "--resolution", "640x360",
                                  "--duration", "30", "--preset", "slower", "--queue", "live", "--wait"), cluster.env)
    try:
        screen = pane.wait_for("━", "running", timeout=60)
        assert "%" in screen
    finally:
        pane.close()
        with cluster.client() as client:  # free the slot for the tests after this one
            for job in client.list():
                if job["scenario"] == "bar" and job["status"] in ("pending", "assigned", "running"):
                    client.cancel(job["id"])


def test_piped_views_are_plain_text_and_json(cluster: LocalCluster) -> None:
    for args in (["jobs", "list"], ["nodes", "list"], ["top", "--once"]):
        done = subprocess.run(ffrtmp_argv(cluster, *args), capture_output=True, text=True, env=cluster.env,
                              check=True, timeout=30)
        assert "\x1b[" not in done.stdout and done.stdout.strip(), args
    listed = json.loads(subprocess.run(ffrtmp_argv(cluster, "jobs", "list", "--json"), capture_output=True,
                                       text=True, env=cluster.env, check=True).stdout)
    assert {"id", "status", "progress", "created_at"} <= set(listed[0])
    nodes = json.loads(subprocess.run(ffrtmp_argv(cluster, "nodes", "list", "--json"), capture_output=True,
                                      text=True, env=cluster.env, check=True).stdout)
    assert {n["name"] for n in nodes} == {"viewer-1", "viewer-2"}


def test_logs_follow_exits_with_the_jobs_exit_code(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        good = client.submit("follow-ok", resolution="160x120", duration=1, queue="live", priority="high")
        bad = client.submit("follow-bad", input=str(cluster.root / "missing.mp4"), queue="live", priority="high")
    ok = subprocess.run(ffrtmp_argv(cluster, "jobs", "logs", good, "--follow"), capture_output=True, text=True,
                        env=cluster.env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "$ " in ok.stdout and "\x1b[" not in ok.stdout
    failed = subprocess.run(ffrtmp_argv(cluster, "jobs", "logs", bad, "--follow"), capture_output=True, text=True,
                            env=cluster.env, timeout=120, check=False)
    assert failed.returncode == 1 and "does not exist" in failed.stdout + failed.stderr
