"""scripts/bench/quality.py at a tiny size: it runs real attempts to the end and reports both modes' ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "quality.py"


def test_the_quality_bench_reports_each_mode_against_its_target() -> None:
    pytest.importorskip("imageio_ffmpeg")
    done = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1", "--resolution", "160x120", "--fps", "10",
                           "--duration", "1", "--bitrate", "100k"], capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    jobs = [r for r in records if r["bench"] == "quality_job"]
    assert {(r["mode"], r["how"]) for r in jobs} == {(m, h) for m in ("basic", "vmaf") for h in ("inline", "after")}
    assert all(r["ratio"] > 0 for r in jobs if r["how"] == "after")  # inline's may be < 0 at this size: noise
    assert all(r["psnr_db"] > 20 for r in jobs)
    assert next(r for r in jobs if r["mode"] == "vmaf")["vmaf"] > 0
    summary = {r["mode"]: r for r in records if r["bench"] == "quality" and r["users_default"]}
    assert {r["how"] for r in summary.values()} == {"inline"}
    assert (summary["basic"]["target"], summary["vmaf"]["target"]) == (0.25, 1.0)
