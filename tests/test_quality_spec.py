"""`--quality` as a job field: its defaults, what it refuses (naming the field), the CLI's exit 2 and the
comparison graph the worker builds from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission
from ffrtmp.master.openapi import document
from ffrtmp.worker.quality import QualityError, QualityPass, modes

RTMP = "rtmp://127.0.0.1/live/x"


def quality(**given: Any) -> str:
    mode: str = validate_submission({"scenario": "t", **given}).params["quality"]
    return mode


def test_defaults_basic_for_files_and_none_for_streams_and_null_jobs() -> None:
    assert quality() == "basic"
    assert quality(output="x.mkv") == "basic"
    assert quality(output=RTMP) == "none"
    assert quality(engine="null") == "none"
    assert quality(quality="vmaf") == "vmaf"
    assert quality(quality="none", output=RTMP) == "none"


@pytest.mark.parametrize("given", [{"quality": "basic", "output": RTMP}, {"quality": "vmaf", "output": RTMP},
                                   {"quality": "vmaf", "engine": "null"}, {"quality": "best"},
                                   {"quality": 1}, {"quality": ["vmaf"]}])
def test_what_cannot_be_measured_is_refused_naming_the_field(given: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_submission({"scenario": "t", **given})
    assert info.value.field == "quality"


def test_the_cli_exits_2_naming_quality_before_any_connection(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--scenario", "t", "--quality", "vmaf",
                           "--output", RTMP, "--master", "tcp://127.0.0.1:1"], capture_output=True, text=True,
                          timeout=60, check=False, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "quality: 'vmaf' cannot be measured for a live rtmp:// output" in done.stderr


def test_the_http_api_schema_offers_the_field() -> None:
    schema = document()["components"]["schemas"]["JobSpec"]["properties"]["quality"]
    assert schema["enum"] == ["none", "basic", "vmaf"]


def test_the_modes_a_worker_serves_follow_its_metrics() -> None:
    assert modes(["psnr", "ssim"]) == ["none", "basic"]
    assert modes(["psnr", "ssim", "vmaf"]) == ["none", "basic", "vmaf"]
    assert modes([]) == ["none"]


def comparison(mode: str, distorted_size: str = "160x120", reference_size: tuple[int, int] = (160, 120),
               **extra: Any) -> QualityPass:
    return QualityPass(mode=mode, distorted="/w/out.mp4", distorted_size=distorted_size, reference="/w/in.mp4",
                       reference_size=reference_size, duration=2.0, **extra)


def test_the_graph_chains_the_metrics_over_one_read_of_each_file() -> None:
    assert comparison("basic").graph() == ("[0:v]setpts=PTS-STARTPTS[d0];[1:v]setpts=PTS-STARTPTS,split=2[r0][r1];"
                                           "[d0][r0]psnr[d1];[d1][r1]ssim")
    vmaf = comparison("vmaf", "640x360", (1280, 720), threads=4).graph()
    assert vmaf.startswith("[0:v]setpts=PTS-STARTPTS,scale=1280:720:flags=bicubic[d0];")
    assert vmaf.endswith("[d2][r2]libvmaf=n_threads=4")


def test_inside_the_encode_the_output_is_decoded_again_and_the_input_cut_to_the_encodes_seconds() -> None:
    assert comparison("basic").inline_args() == [
        "-dec", "0:0", "-filter_complex",
        "[dec:0]setpts=PTS-STARTPTS[d0];[0:v]trim=duration=2,setpts=PTS-STARTPTS,split=2[r0][r1];"
        "[d0][r0]psnr[d1];[d1][r1]ssim[quality]", "-map", "[quality]", "-f", "null", "-"]


def test_files_reach_ffmpeg_as_files_only_and_the_reference_is_cut_like_the_encode() -> None:
    argv = comparison("basic", loop_reference=True).argv("ffmpeg")
    assert "file:/w/out.mp4" in argv and "file:/w/in.mp4" in argv
    second = argv.index("file:/w/in.mp4")
    assert argv[argv.index("-stream_loop"):argv.index("-stream_loop") + 4] == ["-stream_loop", "-1", "-t", "2"]
    assert argv.index("-stream_loop") < second


def test_scores_are_read_from_ffmpegs_summary_lines() -> None:
    lines = ["[Parsed_ssim_2 @ 0x1] SSIM Y:0.823642 (7.536042) U:0.890404 (9.602036) V:0.898340 (9.928513) "
             "All:0.847218 (8.159291)",
             "[Parsed_psnr_1 @ 0x2] PSNR y:26.725879 u:28.646686 v:27.838451 average:27.170147 min:26.3 max:29.0",
             "[Parsed_libvmaf_0 @ 0x3] VMAF score: 62.502113"]
    assert comparison("vmaf").scores(lines) == {"psnr_db": 27.170147, "ssim": 0.847218, "vmaf": 62.502113}
    assert comparison("basic").scores(lines) == {"psnr_db": 27.170147, "ssim": 0.847218}
    identical = [line.replace("average:27.170147", "average:inf") for line in lines]
    assert comparison("basic").scores(identical) == {"ssim": 0.847218}  # JSON has no infinity
    with pytest.raises(QualityError, match="vmaf"):
        comparison("vmaf").scores(lines[:2])


def test_a_jobs_file_line_is_checked_for_quality_too(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"scenario": "t", "quality": "vmaf"}\n{"scenario": "t", "quality": "basic", "output": "'
                    + RTMP + '"}\n')
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "jobs", "submit", "--from", str(jobs), "--master",
                           "tcp://127.0.0.1:1"], capture_output=True, text=True, timeout=60, check=False,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "line 2: quality" in done.stderr
