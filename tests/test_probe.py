"""`ffrtmp worker --probe`: FFmpeg encoders and GStreamer elements, usable or not and why, as a table or JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ffrtmp.cli.worker import _probe
from ffrtmp.views import encoders_table
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.encoders import Encoder


def capabilities() -> Capabilities:
    return Capabilities(
        engines=["ffmpeg", "null"], ffmpeg="/usr/bin/ffmpeg", gstreamer=None, cpu_count=2,
        missing={"gstreamer": "no usable H.264 element (x264enc: not installed (plugin x264, package "
                              "gstreamer1.0-plugins-ugly))"},
        encoders=[
            Encoder("h264_nvenc", "h264", True, available=False, validated=True, reason="driver library missing"),
            Encoder("libx264", "h264", False, available=True, validated=True),
            Encoder("nvh264enc", "h264", True, reason="no device (plugin nvcodec is installed but offers no "
                                                      "nvh264enc)", engine="gstreamer"),
            Encoder("x265enc", "h265", False, available=True, validated=True, engine="gstreamer"),
        ])


def test_probe_json_lists_every_encoder_with_its_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _probe(capabilities(), tmp_path / "work", json_output=True)
    report = json.loads(capsys.readouterr().out)
    assert report["engines"] == ["ffmpeg", "null"]
    assert report["unavailable_engines"]["gstreamer"].startswith("no usable H.264 element")
    by_name = {e["name"]: e for e in report["encoders"]}
    assert by_name["nvh264enc"] == {"name": "nvh264enc", "codec": "h264", "hardware": True, "available": False,
                                    "validated": False, "engine": "gstreamer",
                                    "reason": "no device (plugin nvcodec is installed but offers no nvh264enc)"}
    assert by_name["x265enc"]["available"] is True  # shown, though GStreamer is not offered without H.264
    assert report["resources"]["cpu_count"] >= 1


def test_probe_table_has_an_engine_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _probe(capabilities(), tmp_path / "work", json_output=False)
    out = capsys.readouterr().out
    assert "ENGINE" in out and "WHY NOT" in out
    assert "unavailable: gstreamer: no usable H.264 element" in " ".join(out.split())
    assert "gstreamer: not usable" in out
    for name in ("h264_nvenc", "libx264", "nvh264enc", "x265enc"):
        assert name in out


def test_encoders_table_groups_by_engine_keeping_the_order() -> None:
    found = {e.name: e.to_dict() for e in capabilities().encoders}
    found["legacy"] = {"codec": "vp9", "available": True}  # an entry from a worker before engines were tagged
    table = encoders_table(found)
    engines = list(table.columns[0].cells)
    names = list(table.columns[1].cells)
    assert engines == ["ffmpeg", "ffmpeg", "ffmpeg", "gstreamer", "gstreamer"]
    assert names == ["h264_nvenc", "libx264", "legacy", "nvh264enc", "x265enc"]


@pytest.mark.slow
def test_the_real_probe_on_this_machine(ffmpeg: str, gst_launch: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ffrtmp", "worker", "--probe", "--json", "--work-dir",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert report["engines"] == ["ffmpeg", "gstreamer", "null"]
    by_name = {e["name"]: e for e in report["encoders"]}
    assert by_name["libx264"]["available"] and by_name["x264enc"]["available"]
    for name in ("h264_nvenc", "nvh264enc", "qsvh264enc", "vaapih264enc"):
        if name in by_name and not by_name[name]["available"]:
            assert by_name[name]["reason"], name
