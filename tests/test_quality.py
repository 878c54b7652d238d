"""The quality pass and the cost figures of real encodes (160x120, 1 s): the numbers a completed job reports
are FFmpeg's own for the same pair of files, a higher bitrate measures better, and the cost is real."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ffrtmp.worker import encoders as encoder_probe
from ffrtmp.worker.energy import package_zones
from ffrtmp.worker.measure import Measuring
from ffrtmp.worker.quality import QualityPass, measurable, measures_inline, video_size
from ffrtmp.worker.runner import AttemptRunner, WorkerPaths
from ffrtmp.worker.sources import InputPolicy
from tests.test_runner import Recorder, make_attempt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled() -> str:
    """The bundled FFmpeg (imageio-ffmpeg): it has libvmaf."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path: str = imageio_ffmpeg.get_ffmpeg_exe()
    if "vmaf" not in measurable(path):
        pytest.skip("this bundled FFmpeg has no working libvmaf")
    return path


@pytest.fixture(scope="module")
def encoder_map(ffmpeg: str) -> dict[str, dict[str, Any]]:
    return {e.name: e.to_dict() for e in encoder_probe.detect(ffmpeg)}


def run_job(work: Path, ffmpeg: str, encoders: dict[str, Any], job: str, *, watts: float = 8.0,
            inline: bool = True, **submit: Any) -> dict[str, Any]:
    """One attempt on a runner measuring with `ffmpeg`; the `finished` event's data."""
    recorder = Recorder()
    runner = AttemptRunner(make_attempt(job, **submit), WorkerPaths(work), ffmpeg, encoders, recorder,
                           policy=InputPolicy(input_roots=(work.parent,)),
                           measuring=Measuring(quality_metrics=measurable(ffmpeg), watts_per_core=watts,
                                               inline=inline))
    runner.run()
    result = recorder.finished()
    assert result["status"] == "completed", result
    return result


def generated_source(work: Path) -> Path:
    [source] = (work / "inputs").glob("testsrc2_*.mp4")
    return source


def direct(ffmpeg: str, distorted: str, reference: str, graph: str) -> str:
    """FFmpeg's own log of `-lavfi GRAPH` over the pair, run apart from the worker."""
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", distorted, "-i", reference, "-lavfi", graph,
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120, check=True)
    return done.stderr


def number(pattern: str, log: str) -> float:
    match = re.search(pattern, log)
    assert match, f"{pattern!r} not in FFmpeg's log"
    return float(match.group(1))


def test_a_higher_bitrate_measures_a_higher_psnr_on_the_same_source(tmp_path: Path, ffmpeg: str,
                                                                    encoder_map: dict[str, Any]) -> None:
    low = run_job(tmp_path / "work", ffmpeg, encoder_map, "low", bitrate="30k")["metrics"]
    high = run_job(tmp_path / "work", ffmpeg, encoder_map, "high", bitrate="600k")["metrics"]
    assert (low["quality"], high["quality"]) == ("basic", "basic")  # the default for a file output
    assert high["psnr_db"] > low["psnr_db"] + 1.0, (low, high)
    assert 0 < low["ssim"] < high["ssim"] <= 1
    assert "vmaf" not in high


@pytest.mark.parametrize("inline", [True, False], ids=["inside-the-encode", "after-the-encode"])
def test_reported_psnr_ssim_and_vmaf_equal_ffmpegs_own_run_on_the_pair(tmp_path: Path, bundled: str,
                                                                       encoder_map: dict[str, Any],
                                                                       inline: bool) -> None:
    """Measured inside the encode (the bundled FFmpeg 7.1+ has loopback decoders) or after it, the numbers are
    FFmpeg's own for the output file against its source."""
    assert measures_inline(bundled)
    work = tmp_path / "work"
    result = run_job(work, bundled, encoder_map, "vmaf", bitrate="80k", quality="vmaf", inline=inline)
    metrics, output, reference = result["metrics"], result["partial"], str(generated_source(work))
    assert metrics["quality"] == "vmaf"
    assert metrics["psnr_db"] == pytest.approx(number(r"average:(\S+)", direct(bundled, output, reference,
                                                                                "[0:v][1:v]psnr")), abs=1e-6)
    assert metrics["ssim"] == pytest.approx(number(r"All:(\S+)", direct(bundled, output, reference,
                                                                         "[0:v][1:v]ssim")), abs=1e-6)
    assert metrics["vmaf"] == pytest.approx(number(r"VMAF score: (\S+)", direct(bundled, output, reference,
                                                                                "[0:v][1:v]libvmaf")), abs=1e-6)
    assert 0 < metrics["vmaf"] <= 100
    if inline:
        assert metrics["quality_inline"] is True and "quality_seconds" not in metrics
    else:
        assert metrics["quality_seconds"] > 0 and "quality_inline" not in metrics


def test_an_output_smaller_than_its_input_is_scaled_up_to_the_inputs_size(tmp_path: Path, ffmpeg: str,
                                                                          encoder_map: dict[str, Any]) -> None:
    source = tmp_path / "in.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=10", "-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", str(source)], check=True, timeout=60)
    result = run_job(tmp_path / "work", ffmpeg, encoder_map, "scaled", input=str(source))
    own = direct(ffmpeg, result["partial"], str(source), "[0:v]scale=320:240:flags=bicubic[d];[d][1:v]psnr")
    assert result["metrics"]["psnr_db"] == pytest.approx(number(r"average:(\S+)", own), abs=1e-6)


def test_measured_inside_the_encode_a_smaller_output_is_scaled_up_and_equals_ffmpegs_own(
        tmp_path: Path, bundled: str, encoder_map: dict[str, Any]) -> None:
    source = tmp_path / "in.mp4"
    subprocess.run([bundled, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=10", "-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", str(source)], check=True, timeout=60)
    result = run_job(tmp_path / "work", bundled, encoder_map, "scaled", input=str(source))
    assert result["metrics"]["quality_inline"] is True
    own = direct(bundled, result["partial"], str(source), "[0:v]scale=320:240:flags=bicubic[d];[d][1:v]ssim")
    assert result["metrics"]["ssim"] == pytest.approx(number(r"All:(\S+)", own), abs=1e-6)


@pytest.mark.parametrize("inline", [True, False], ids=["inside-the-encode", "after-the-encode"])
def test_a_millisecond_container_at_30_fps_measures_the_same_inside_and_after_the_encode(
        tmp_path: Path, bundled: str, encoder_map: dict[str, Any], inline: bool) -> None:
    """MKV keeps milliseconds: 1/30 s is stored as 0.033 s. Both ways must pair each output frame with the
    source frame it was made from, which is what pairing by frame index gives (the truth here: the same rate
    on both sides)."""
    source = tmp_path / "s30.mp4"
    subprocess.run([bundled, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=30", "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", str(source)], check=True, timeout=60)
    result = run_job(tmp_path / "work", bundled, encoder_map, "mkv", input=str(source), fps=30,
                     output="outputs/clip.mkv", inline=inline)
    truth = direct(bundled, result["partial"], str(source),
                   "[0:v]settb=1/30,setpts=N[d];[1:v]trim=duration=1,settb=1/30,setpts=N[r];[d][r]psnr")
    assert result["metrics"].get("quality_inline", False) is inline
    assert result["metrics"]["psnr_db"] == pytest.approx(number(r"average:(\S+)", truth), abs=1e-3)


def test_an_encode_whose_inline_measurement_fails_is_encoded_again_and_measured_after(
        tmp_path: Path, bundled: str, encoder_map: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement must never fail a job: a graph FFmpeg refuses (here one naming no such filter) stops
    the process that encodes too, so the plain encode runs again, and the pass after it measures."""
    broken = ["-dec", "0:0", "-filter_complex", "[dec:0]no_such_filter[quality]", "-map", "[quality]", "-f",
              "null", "-"]
    monkeypatch.setattr(QualityPass, "inline_args", lambda self: broken)
    recorder = Recorder()
    AttemptRunner(make_attempt("fallback"), WorkerPaths(tmp_path / "work"), bundled, encoder_map, recorder,
                  measuring=Measuring(quality_metrics=measurable(bundled))).run()
    result = recorder.finished()
    assert result["status"] == "completed", result
    assert result["metrics"]["psnr_db"] > 0 and "quality_inline" not in result["metrics"]
    assert any("encoding again without the measurement" in text for text in recorder.texts())
    once = run_job(tmp_path / "work", bundled, encoder_map, "once", quality="none")["metrics"]
    assert result["metrics"]["cpu_seconds"] > once["cpu_seconds"]  # both runs are the job's cost


def test_quality_none_measures_nothing_and_a_missing_libvmaf_is_said(tmp_path: Path, ffmpeg: str,
                                                                     encoder_map: dict[str, Any]) -> None:
    plain = run_job(tmp_path / "work", ffmpeg, encoder_map, "none", quality="none")["metrics"]
    assert plain["quality"] == "none"
    assert not {"psnr_db", "ssim", "vmaf", "quality_error"} & set(plain)
    if "vmaf" in measurable(ffmpeg):
        return  # this FFmpeg has libvmaf: placement, not this runner, keeps vmaf jobs from those without
    missing = run_job(tmp_path / "work", ffmpeg, encoder_map, "no-vmaf", quality="vmaf")["metrics"]
    assert "libvmaf" in missing["quality_error"]  # completed all the same: the encode itself is good
    assert "psnr_db" not in missing


def test_a_real_encode_costs_cpu_time_memory_and_energy(tmp_path: Path, ffmpeg: str,
                                                        encoder_map: dict[str, Any]) -> None:
    metrics = run_job(tmp_path / "work", ffmpeg, encoder_map, "cost", watts=12.5, quality="none")["metrics"]
    assert metrics["cpu_seconds"] > 0
    assert metrics["peak_rss_bytes"] > 1 << 20  # an ffmpeg process is never under a MiB resident
    if package_zones():
        assert metrics["energy_source"] == "rapl"
    else:  # this machine: no readable RAPL
        assert metrics["energy_source"] == "estimated"
        assert metrics["energy_joules"] == pytest.approx(metrics["cpu_seconds"] * 12.5, abs=1e-3)
        assert "12.5 W per core" in metrics["energy_how"]
    assert metrics["energy_joules"] > 0


def test_a_cancel_during_the_comparison_cancels_the_job_and_deletes_its_output(tmp_path: Path, ffmpeg: str,
                                                                              encoder_map: dict[str, Any]) -> None:
    attempt = make_attempt("cancel-in-pass")

    class CancelAtPass(Recorder):
        def __call__(self, event: Any) -> None:
            super().__call__(event)
            if event.kind == "log" and str(event.data[3]).startswith("measuring quality"):
                attempt.cancel_reason = "canceled by the test"
                attempt.cancel.set()  # from the runner's own thread: before the pass's first read

    recorder = CancelAtPass()
    runner = AttemptRunner(attempt, WorkerPaths(tmp_path / "work"), ffmpeg, encoder_map, recorder,
                           measuring=Measuring(quality_metrics=measurable(ffmpeg)))
    runner.run()
    result = recorder.finished()
    assert result["status"] == "canceled", result
    assert runner.output is not None and not Path(runner.output.partial).exists()


def test_the_comparison_reports_progress_the_masters_stall_check_sees(tmp_path: Path, ffmpeg: str,
                                                                      encoder_map: dict[str, Any]) -> None:
    from ffrtmp.master.nodes import AttemptState

    attempt = make_attempt("progress")
    recorder = Recorder()
    AttemptRunner(attempt, WorkerPaths(tmp_path / "work"), ffmpeg, encoder_map, recorder,
                  measuring=Measuring(quality_metrics=measurable(ffmpeg))).run()
    assert recorder.finished()["status"] == "completed"
    last = attempt.progress  # what the last heartbeat carried
    assert (last["phase"], last["quality_frames"], last["frames"]) == ("quality", 10, 10)
    held = AttemptState(attempt=1, assigned_at=0.0)
    held.advance({**last, "quality_frames": 0}, now=1.0)
    held.advance(last, now=2.0)
    assert held.progress_at == 2.0  # the encode's figures stood still, the comparison's moved


def test_above_1080p_the_comparison_runs_after_the_encode(tmp_path: Path, bundled: str) -> None:
    """Inside the encode the source frames wait for the encoder's delayed output: bounded by measuring 4K after."""
    from ffrtmp.worker.engines import JobContext
    from ffrtmp.worker.measure import inline_comparison

    def context(resolution: str) -> JobContext:
        attempt = make_attempt("big", resolution=resolution)
        return JobContext(job_id="big", attempt=1, spec=attempt.spec, work_dir=tmp_path, input_path="/in.mp4",
                          output=str(tmp_path / "out.mp4"), encoder="libx264", ffmpeg=bundled)

    measuring = Measuring(quality_metrics=measurable(bundled))
    assert inline_comparison("ffmpeg", bundled, measuring, context("1920x1080")) is not None
    assert inline_comparison("ffmpeg", bundled, measuring, context("3840x2160")) is None
    assert inline_comparison("gstreamer", bundled, measuring, context("1280x720")) is None
    assert inline_comparison("ffmpeg", bundled, Measuring(quality_metrics=measurable(bundled), inline=False),
                             context("1280x720")) is None


def test_a_source_stored_sideways_is_compared_upright(tmp_path: Path, bundled: str,
                                                      encoder_map: dict[str, Any]) -> None:
    """Phone footage: 160x120 stored, a display matrix of 90°; FFmpeg decodes it as 120x160 frames."""
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rot.mp4"
    subprocess.run([bundled, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=10", "-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", str(plain)], check=True, timeout=60)
    subprocess.run([bundled, "-hide_banner", "-loglevel", "error", "-display_rotation", "90", "-i", str(plain),
                    "-c", "copy", str(rotated)], check=True, timeout=60)
    assert video_size(bundled, str(rotated)) == (120, 160)
    recorder = Recorder()
    AttemptRunner(make_attempt("rot", input=str(rotated)), WorkerPaths(tmp_path / "work"), bundled, encoder_map,
                  recorder, policy=InputPolicy(input_roots=(tmp_path,)),
                  measuring=Measuring(quality_metrics=measurable(bundled))).run()
    metrics = recorder.finished()["metrics"]
    assert metrics["quality_inline"] is True and metrics["psnr_db"] > 20, metrics
    assert not any("encoding again" in text for text in recorder.texts())
