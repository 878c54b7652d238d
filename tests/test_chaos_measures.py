"""What the chaos benchmark counts as a failure: an unmarked log gap, two attempts encoding at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))

from chaos import unmarked_gaps  # noqa: E402
from faults import PARTIAL_ARG, EncoderWatch  # noqa: E402


def lines(*seqs: int, attempt: int = 1, marker_at: int | None = None, text: str = "dropped") -> list[dict[str, Any]]:
    return [{"attempt": attempt, "seq": seq, "line": f"[ffrtmp: 5 log lines {text}]" if seq == marker_at else "x"}
            for seq in seqs]


def test_a_contiguous_log_has_no_gap() -> None:
    assert unmarked_gaps(lines(1, 2, 3) + lines(1, 2, attempt=2)) == 0


def test_a_missing_seq_is_a_gap_unless_a_marker_follows_it() -> None:
    assert unmarked_gaps(lines(1, 2, 5, 6)) == 1
    assert unmarked_gaps(lines(2, 3)) == 1  # the head is missing
    assert unmarked_gaps(lines(1, 2, 5, 6, marker_at=5)) == 0


def test_nothing_after_a_truncation_marker_counts() -> None:
    assert unmarked_gaps(lines(1, 2, 3, 9, marker_at=3, text="truncated; later lines are dropped")) == 0


def test_each_attempt_is_checked_on_its_own() -> None:
    assert unmarked_gaps(lines(1, 2) + lines(1, 3, attempt=2)) == 1


def test_overlap_is_the_time_two_attempts_of_one_job_were_both_seen() -> None:
    watch = EncoderWatch(Path("/nowhere"))
    watch.seen = {("a", 1): [10.0, 20.0], ("a", 2): [15.0, 30.0], ("b", 1): [0.0, 5.0], ("b", 2): [6.0, 9.0]}
    assert watch.overlaps() == {"a": 5.0}


def test_the_partial_name_gives_job_and_attempt() -> None:
    match = PARTIAL_ARG.search("/w/outputs/t/abc123/out.abc123.attempt-2.partial.mp4")
    assert match is not None and (match[1], match[2]) == ("abc123", "2")


def test_a_rewrite_of_the_benchmarks_page_keeps_the_chaos_section(tmp_path: Path) -> None:
    from report import KEPT_BEGIN, KEPT_END, write_docs

    md = tmp_path / "benchmarks.md"
    section = f"{KEPT_BEGIN}\n## Chaos\n\nmeasured by hand\n{KEPT_END}"
    md.write_text(f"# old\n\n{section}\n\n## Raw results\n")
    write_docs([], md, tmp_path / "benchmarks.png", "scripts/bench/run")
    text = md.read_text()
    assert section in text and text.index(section) < text.index("## Raw results")
