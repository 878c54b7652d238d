"""The check of issue 18: a recommendation, encoded, meets its target.

A real sweep (4 bitrates × h264, h265 of a 2 s 160x120 source) runs on a real master and worker; `ffrtmp recommend
--target-psnr X` picks an encoder and bitrate from the measured curves; a job at that setting then measures
≥ X − 1 dB.

Which measurement: the worker's own (`--quality basic`, the default for file outputs): each sweep job's
RESULT carries `psnr_db`, which is what `recommend` reads. The test checks one of those numbers against a
direct `ffmpeg -lavfi psnr` run here, and the final encode's PSNR is measured here too, independently of the
worker.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.inprocess import InProcessCluster, inprocess_cluster, wait_for_workers
from tests.test_cli_keys import run

pytestmark = pytest.mark.slow

BITRATES = ("40k", "80k", "160k", "320k")
SIZE, FPS, SECONDS = "160x120", 30, 2


def measured_psnr(ffmpeg: str, encoded: str, source: Path) -> float:
    """FFmpeg's own average PSNR of `encoded` against `source` (dB)."""
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostats", "-i", f"file:{encoded}", "-i", f"file:{source}",
                           "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60, check=True)
    match = re.search(r"PSNR y:\S+ u:\S+ v:\S+ average:([0-9.]+)", done.stderr)
    assert match, done.stderr[-2000:]
    return float(match.group(1))


def cli(cluster: InProcessCluster, *args: str) -> tuple[int, str]:
    return run(*args, "--master", cluster.url, "--master-key", cluster.master_key)


def test_a_recommended_setting_encoded_meets_its_psnr_target(tmp_path: Path, ffmpeg: str) -> None:
    source = tmp_path / "source.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}", "-t",
                    str(SECONDS), "-c:v", "ffv1", str(source)], check=True, timeout=60)
    with inprocess_cluster(tmp_path) as cluster:
        cluster.add_worker("w1", slots=2)
        wait_for_workers(cluster, "w1")
        code, out = cli(cluster, "jobs", "sweep", "--scenario", "sweep", "--bitrates", ",".join(BITRATES),
                        "--codecs", "h264,h265", "--resolution", SIZE, "--fps", str(FPS), "--duration", str(SECONDS),
                        "--input", str(source), "--wait", "--json", "--connect-timeout", "30")
        assert code == 0, out
        sweep = json.loads(out)
        assert len(sweep["jobs"]) == 8

        # the history: each sweep job with the PSNR its worker measured of its output
        curves: dict[str, dict[str, float]] = {}
        for job in sweep["jobs"]:
            assert job["status"] == "completed" and isinstance(job["metrics"].get("psnr_db"), float), job
            curves.setdefault(job["metrics"]["encoder"], {})[job["params"]["bitrate"]] = job["metrics"]["psnr_db"]
        first = sweep["jobs"][0]
        assert abs(measured_psnr(ffmpeg, first["output"], source) - first["metrics"]["psnr_db"]) < 0.5, first
        x264 = curves["libx264"]
        assert x264["40k"] < x264["320k"], f"more bitrate measures more PSNR: {x264}"
        target = round((x264["80k"] + x264["160k"]) / 2, 2)  # inside the measured range, between two points

        code, out = cli(cluster, "recommend", "--resolution", SIZE, "--fps", str(FPS), "--target-psnr", str(target),
                        "--json")
        assert code == 0, out
        answer = json.loads(out)
        chosen = answer["recommendation"]
        assert chosen is not None, answer
        assert {e["encoder"] for e in answer["encoders"]} == {"libx264", "libx265"}
        assert all(len(e["measurements"]) == 4 for e in answer["encoders"])

        with cluster.client(timeout=30) as client:
            job_id = client.submit("sweep", codec=chosen["encoder"], bitrate=chosen["bitrate"], resolution=SIZE,
                                   fps=FPS, duration=SECONDS, input=str(source))
            job = client.wait(job_id, timeout=120)
        assert job["status"] == "completed", job
        got = measured_psnr(ffmpeg, job["output"], source)
        assert got >= target - 1, (f"{chosen['encoder']} at {chosen['bitrate']} measured {got:.2f} dB, target "
                                   f"{target} (curves {curves})")
