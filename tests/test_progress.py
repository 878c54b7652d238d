"""FfmpegProgress (`-progress pipe:1` blocks) and GstProgress (`progressreport` lines) into one snapshot."""

from __future__ import annotations

import pytest

from ffrtmp.worker.progress import FfmpegProgress, GstProgress

# Captured from `ffmpeg -nostats -progress pipe:1 ... -c:v libx264 -b:v 512k` (FFmpeg 5.1): a mid-run block.
RUNNING_BLOCK = """\
frame=45
fps=22.47
stream_0_0_q=28.0
bitrate=  512.3kbits/s
total_size=96256
out_time_us=1500000
out_time_ms=1500000
out_time=00:00:01.500000
dup_frames=0
drop_frames=0
speed=1.5x
progress=continue
"""

# The first block FFmpeg writes, before anything was muxed: most figures are N/A.
FIRST_BLOCK = """\
frame=0
fps=0.00
stream_0_0_q=0.0
bitrate=N/A
total_size=N/A
out_time_us=N/A
out_time_ms=N/A
out_time=N/A
dup_frames=0
drop_frames=0
speed=N/A
progress=continue
"""

END_BLOCK = """\
frame=90
fps=45.00
stream_0_0_q=-1.0
bitrate=  498.1kbits/s
total_size=186752
out_time_us=2960000
out_time_ms=2960000
out_time=00:00:02.960000
dup_frames=0
drop_frames=0
speed=1.48x
progress=end
"""


def feed_all(parser: FfmpegProgress, text: str) -> list[bool]:
    return [parser.feed(line) for line in text.splitlines()]


def test_a_block_becomes_a_snapshot_in_our_metric_names() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, RUNNING_BLOCK)
    assert parser.snapshot == {"frames": 45, "fps": 22.47, "speed": 1.5, "out_time": 1.5, "bitrate": 512.3,
                               "size": 96256, "progress": 0.5}
    assert isinstance(parser.snapshot["frames"], int)
    assert isinstance(parser.snapshot["size"], int)
    assert parser.ended is False


def test_only_the_progress_line_completes_a_block() -> None:
    parser = FfmpegProgress(duration=3.0)
    results = feed_all(parser, RUNNING_BLOCK)
    assert results == [False] * 11 + [True]


def test_the_snapshot_changes_only_when_a_block_completes() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, RUNNING_BLOCK)
    before = parser.snapshot
    for line in END_BLOCK.splitlines()[:-1]:
        parser.feed(line)
    assert parser.snapshot == before
    parser.feed("progress=end")
    assert parser.snapshot["frames"] == 90


def test_na_values_are_left_out() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, FIRST_BLOCK)
    assert parser.snapshot == {"frames": 0, "fps": 0.0}


def test_end_gives_full_progress_even_short_of_the_duration() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, END_BLOCK)
    assert parser.ended is True
    assert parser.snapshot["out_time"] == pytest.approx(2.96)
    assert parser.snapshot["progress"] == 1.0


def test_progress_is_out_time_over_duration() -> None:
    parser = FfmpegProgress(duration=6.0)
    feed_all(parser, RUNNING_BLOCK)
    assert parser.snapshot["progress"] == pytest.approx(0.25)


def test_progress_is_capped_at_one() -> None:
    parser = FfmpegProgress(duration=1.0)
    feed_all(parser, RUNNING_BLOCK)  # 1.5 s written of a 1 s job
    assert parser.snapshot["progress"] == 1.0


@pytest.mark.parametrize("duration", [None, 0.0])
def test_no_progress_fraction_without_a_duration(duration: float | None) -> None:
    parser = FfmpegProgress(duration=duration)
    feed_all(parser, RUNNING_BLOCK)
    assert "progress" not in parser.snapshot
    assert parser.snapshot["out_time"] == 1.5


def test_out_time_ms_is_used_when_out_time_us_is_missing() -> None:
    # Older FFmpeg builds only write out_time_ms, which (despite its name) holds microseconds.
    parser = FfmpegProgress(duration=4.0)
    feed_all(parser, "frame=30\nout_time_ms=2000000\nprogress=continue\n")
    assert parser.snapshot["out_time"] == 2.0
    assert parser.snapshot["progress"] == 0.5


def test_a_negative_out_time_is_ignored() -> None:
    # FFmpeg writes a negative out_time_us for the first block of some inputs (timestamps before zero).
    parser = FfmpegProgress(duration=4.0)
    feed_all(parser, "frame=0\nout_time_us=-23220\nout_time=-00:00:00.023220\nprogress=continue\n")
    assert "out_time" not in parser.snapshot
    assert "progress" not in parser.snapshot


def test_lines_without_an_equals_sign_are_ignored() -> None:
    parser = FfmpegProgress(duration=3.0)
    noise = ["", "   ", "Press [q] to stop", "frame 12 fps 3"]
    assert [parser.feed(line) for line in noise] == [False] * len(noise)
    feed_all(parser, RUNNING_BLOCK)
    assert parser.snapshot["frames"] == 45


def test_garbage_values_are_left_out() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, "frame=abc\nfps=\nspeed=fast\nbitrate=lots\ntotal_size=?\nout_time_us=x\nprogress=continue\n")
    assert parser.snapshot == {}


def test_each_block_starts_fresh() -> None:
    parser = FfmpegProgress(duration=3.0)
    feed_all(parser, RUNNING_BLOCK)
    feed_all(parser, "frame=50\nprogress=continue\n")
    assert parser.snapshot == {"frames": 50}


def test_lines_with_trailing_whitespace_and_carriage_returns() -> None:
    parser = FfmpegProgress(duration=3.0)
    for line in RUNNING_BLOCK.splitlines():
        parser.feed(line + "\r\n")
    assert parser.snapshot["frames"] == 45
    assert parser.snapshot["speed"] == 1.5
    assert parser.snapshot["progress"] == 0.5


def test_a_sequence_of_blocks_tracks_the_latest() -> None:
    parser = FfmpegProgress(duration=3.0)
    seen = []
    for text in (FIRST_BLOCK, RUNNING_BLOCK, END_BLOCK):
        feed_all(parser, text)
        seen.append(parser.snapshot.get("progress"))
    assert seen == [None, 0.5, 1.0]
    assert parser.ended is True


# ---- GStreamer's progressreport --------------------------------------------------------------------------

# gst-launch-1.0 -e videotestsrc is-live=true num-buffers=40 … ! progressreport update-freq=1 silent=false …
# (GStreamer 1.22, captured here): stdout interleaves gst-launch's own lines with one report a second.
GST_STDOUT = """\
Setting pipeline to PAUSED ...
Pipeline is live and does not need PREROLL ...
Pipeline is PREROLLED ...
Setting pipeline to PLAYING ...
New clock: GstSystemClock
Redistribute latency...
progressreport0 (00:00:01): 0 / 4 seconds ( 0.0 %)
progressreport0 (00:00:02): 1 / 4 seconds (25.0 %)
progressreport0 (00:00:03): 2 / 4 seconds (50.0 %)
progressreport0 (00:00:04): 3 / 4 seconds (75.0 %)
progressreport0 (00:00:04): 4 / 4 seconds (100.0 %)
Got EOS from element "pipeline0".
EOS received - stopping pipeline...
Execution ended after 0:00:04.134850682
Setting pipeline to NULL ...
Freeing pipeline ...
"""


def test_gst_reports_become_snapshots_in_our_metric_names() -> None:
    parser = GstProgress(duration=4.0, fps=10)
    changed = [line for line in GST_STDOUT.splitlines() if parser.feed(line)]
    assert len(changed) == 5 and all(line.startswith("progressreport0 (") for line in changed)
    assert parser.snapshot == {"out_time": 4.0, "frames": 40, "speed": 1.0, "fps": 10.0, "progress": 1.0}


def test_gst_mid_run_snapshot() -> None:
    parser = GstProgress(duration=4.0, fps=25)
    assert parser.feed("progress (00:00:03): 2 / 4 seconds (50.0 %)")
    assert parser.snapshot == {"out_time": 2.0, "frames": 50, "speed": 0.667, "fps": 16.67, "progress": 0.5}
    assert parser.consumes_all_lines is False  # gst-launch's other lines are worth logging


def test_gst_report_without_a_known_total() -> None:
    # A live input has no duration: the report gives the position only; ours comes from the job.
    parser = GstProgress(duration=10.0, fps=10)
    assert parser.feed("progress (00:01:05): 65 seconds")
    assert parser.snapshot["out_time"] == 65.0
    assert parser.snapshot["progress"] == 1.0
    assert parser.snapshot["speed"] == 1.0


def test_gst_first_report_has_no_rate_yet() -> None:
    parser = GstProgress(duration=4.0, fps=10)
    assert parser.feed("progressreport0 (00:00:00): 0 / 4 seconds ( 0.0 %)")
    assert parser.snapshot == {"out_time": 0.0, "frames": 0, "progress": 0.0}


@pytest.mark.parametrize("line", ["progressreport0 (00:00:01): 12 / 40 buffers (30.0 %)",
                                  "progressreport0 (00:00:01): 1024 / 4096 bytes (25.0 %)",
                                  "Redistribute latency...", "", "progress (aa:bb:cc): 1 seconds"])
def test_gst_lines_that_are_not_time_reports_change_nothing(line: str) -> None:
    parser = GstProgress(duration=4.0, fps=10)
    assert parser.feed(line) is False
    assert parser.snapshot == {}


def test_gst_without_duration_or_fps() -> None:
    parser = GstProgress(duration=None, fps=None)
    assert parser.feed("progress (00:00:02): 2 seconds")
    assert parser.snapshot == {"out_time": 2.0, "speed": 1.0}


def test_ffmpeg_parser_consumes_every_stdout_line() -> None:
    assert FfmpegProgress(duration=1.0).consumes_all_lines is True
