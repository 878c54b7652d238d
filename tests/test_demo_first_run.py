"""The first command on a bare laptop: `ffrtmp demo` works with the bundled FFmpeg, and never waits silently."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ffrtmp.diagnosis import how_to_get, unrunnable
from ffrtmp.views import wait_reasons
from ffrtmp.worker.capabilities import Capabilities

ROOT = Path(__file__).resolve().parents[1]


def job(status: str = "pending", reason: str | None = None, engine: str = "auto", codec: str = "h264") -> dict:
    return {"id": "0123456789abcdef", "scenario": "demo-x", "status": status, "reason": reason, "engine": engine,
            "params": {"codec": codec}}


def test_only_a_reason_no_connected_worker_can_fix_counts_as_unrunnable() -> None:
    assert unrunnable(job(reason="no connected worker has engine ffmpeg")) == "no connected worker has engine ffmpeg"
    assert unrunnable(job(reason="no worker is connected")) == "no worker is connected"
    assert unrunnable(job(reason="waiting for a free slot")) is None
    assert unrunnable(job(reason="tenant 'a' is at its running quota")) is None
    assert unrunnable(job(status="running", reason="no connected worker has engine ffmpeg")) is None
    assert unrunnable(job()) is None


def test_a_missing_engine_names_each_engine_the_job_could_use_and_its_fix() -> None:
    local = Capabilities(engines=["null"], ffmpeg=None, gstreamer=None,
                         missing={"ffmpeg": "--ffmpeg/FFRTMP_FFMPEG '/nonexistent' is not an executable: pass ...",
                                  "gstreamer": "gst-launch-1.0 not found (install gstreamer1.0-tools and the plugins)"})
    both = how_to_get(job(engine="auto"), local)
    assert "ffmpeg: --ffmpeg/FFRTMP_FFMPEG '/nonexistent'" in both and "gstreamer1.0-tools" in both
    assert how_to_get(job(engine="gstreamer"), local).startswith("gstreamer: gst-launch-1.0 not found")


def test_a_missing_encoder_names_the_codec_the_ffmpeg_and_a_fix() -> None:
    local = Capabilities(engines=["ffmpeg", "null"], ffmpeg="/usr/bin/ffmpeg", gstreamer=None,
                         missing={"gstreamer": "gst-launch-1.0 not found"}, ffmpeg_source="PATH")
    text = how_to_get(job(engine="auto", codec="h265"), local)
    assert "/usr/bin/ffmpeg (PATH) has no usable h265 encoder (e.g. libx265)" in text
    assert "--ffmpeg PATH" in text and "ffrtmp worker --probe" in text


def test_the_live_view_shows_each_pending_jobs_wait_reason() -> None:
    text = wait_reasons([job(reason="no connected worker has engine auto"), job(status="completed"),
                         {**job(reason="waiting for a free slot"), "scenario": "demo-y"}]).plain
    assert text.splitlines() == ["01234567 demo-x waits: no connected worker has engine auto",
                                 "01234567 demo-y waits: waiting for a free slot"]


def bin_without(tmp_path: Path, *hidden: str) -> str:
    """A PATH directory with the usual tools of /usr/bin except `hidden` (and anything FFmpeg or GStreamer)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nice", "sh", "env", "uname"):
        if tool not in hidden and Path("/usr/bin", tool).exists():
            (bin_dir / tool).symlink_to(Path("/usr/bin", tool))
    return str(bin_dir)


@pytest.mark.slow
def test_a_demo_whose_workers_cannot_run_a_job_says_why_and_exits_non_zero(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": bin_without(tmp_path), "FFRTMP_CONFIG_DIR": str(tmp_path / "cfg"), "COLUMNS": "120"}
    env.pop("FFRTMP_FFMPEG", None)
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "demo", "--ffmpeg", "/nonexistent", "--timeout", "90"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "5 of 6 demo jobs cannot run on this machine's workers" in done.stderr, out[-3000:]
    assert "'/nonexistent' is not an executable" in done.stderr and "gst-launch-1.0 not found" in done.stderr
    seen_after = float(re.search(r"seen after ([\d.]+)s", done.stderr).group(1))  # type: ignore[union-attr]
    assert seen_after <= 5.0, "said within 5 s of the submit"
    assert "demo-live waits: no connected worker has" in done.stdout, "the live view shows the wait reason"


@pytest.mark.slow
def test_a_fresh_install_with_no_ffmpeg_on_path_runs_the_demo(tmp_path: Path) -> None:
    """`pip install` of this checkout into a new venv (pip's cache, no internet but PyPI), PATH without ffmpeg."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True, text=True,
                         timeout=600, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FFRTMP_")}
    env.update(PATH=f"{venv / 'bin'}:{bin_without(tmp_path)}", FFRTMP_CONFIG_DIR=str(tmp_path / "cfg"),
               HOME=str(tmp_path / "home"), COLUMNS="120")
    env.pop("PYTHONPATH", None)
    probe = subprocess.run(["ffrtmp", "worker", "--probe", "--json", "--engines", "ffmpeg", "--work-dir",
                            str(tmp_path / "work")], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert probe.returncode == 0 and '"ffmpeg_bundled": true' in probe.stdout, probe.stdout + probe.stderr
    done = subprocess.run(["ffrtmp", "demo", "--timeout", "90"], capture_output=True, text=True, timeout=150,
                          env=env, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = re.search(r"summary: 6/6 completed in ([\d.]+)s", done.stdout)
    assert summary, done.stdout[-3000:]
    print(f"fresh-install demo: 6/6 in {summary.group(1)}s")
