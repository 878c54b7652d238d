"""The output verifier on real files from real ffmpeg (160x120, 1 s): what passes, and each way one fails."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from ffrtmp.worker.verify import OutputInvalid, tolerance, verify_output


def encode(ffmpeg: str, target: Path, seconds: float = 1.0) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    f"file:{target}"], check=True, timeout=60)
    return target


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_whole_output_passes_with_its_size_hash_and_duration(tmp_path: Path, ffmpeg: str, suffix: str) -> None:
    path = encode(ffmpeg, tmp_path / f"out{suffix}")
    verified = verify_output(ffmpeg, path, expected_duration=1.0)
    assert verified.size == path.stat().st_size > 0
    assert verified.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(verified.duration - 1.0) <= tolerance(1.0)


def test_a_truncated_mp4_does_not_decode(tmp_path: Path, ffmpeg: str) -> None:
    whole = encode(ffmpeg, tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OutputInvalid, match="does not decode"):
        verify_output(ffmpeg, cut, 1.0)


def test_a_truncated_mkv_decodes_short_and_fails_on_its_duration(tmp_path: Path, ffmpeg: str) -> None:
    whole = encode(ffmpeg, tmp_path / "whole.mkv", seconds=2.0).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(OutputInvalid, match=r"decodes to \d\.\d\ds, not the 2\.00s"):
        verify_output(ffmpeg, cut, 2.0)


def test_a_shorter_output_than_encoded_fails(tmp_path: Path, ffmpeg: str) -> None:
    path = encode(ffmpeg, tmp_path / "short.mp4", seconds=1.0)
    with pytest.raises(OutputInvalid, match="truncated or damaged"):
        verify_output(ffmpeg, path, expected_duration=3.0)


def test_a_stub_an_empty_file_and_a_missing_one_fail(tmp_path: Path, ffmpeg: str) -> None:
    stub = tmp_path / "stub.mp4"
    stub.write_bytes(b"\x00" * 55)  # Unmanic #639: a 55-byte stub in place of a video
    with pytest.raises(OutputInvalid, match="does not decode"):
        verify_output(ffmpeg, stub, 1.0)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(OutputInvalid, match="is empty"):
        verify_output(ffmpeg, empty, 1.0)
    with pytest.raises(OutputInvalid, match="is missing"):
        verify_output(ffmpeg, tmp_path / "gone.mp4", 1.0)


def test_a_name_that_reads_as_a_protocol_is_read_as_a_file(tmp_path: Path, ffmpeg: str) -> None:
    odd = tmp_path / "concat:x.mp4"
    encode(ffmpeg, tmp_path / "x.mp4").rename(odd)
    assert verify_output(ffmpeg, odd, 1.0).size == odd.stat().st_size
