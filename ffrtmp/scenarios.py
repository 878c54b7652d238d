"""Scenario presets: named defaults for the encoding parameters of a job.

`--scenario NAME` picks a preset here; any other name is only a label and the plain defaults apply.
Explicit options always win over the preset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    resolution: str
    fps: int
    duration: float
    codec: str
    bitrate: str
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("test1", "640x360", 30, 3, "h264", "1000k", "a quick smoke test"),
        Scenario("480p30-h264", "854x480", 30, 10, "h264", "1500k", "SD H.264"),
        Scenario("480p30-vp9", "854x480", 30, 10, "vp9", "1000k", "SD VP9 for the web"),
        Scenario("720p30-h264", "1280x720", 30, 10, "h264", "2500k", "HD H.264, the common case"),
        Scenario("720p60-h264", "1280x720", 60, 10, "h264", "4000k", "HD H.264 at 60 fps"),
        Scenario("1080p30-h264", "1920x1080", 30, 10, "h264", "5000k", "Full HD H.264"),
        Scenario("1080p30-h265", "1920x1080", 30, 10, "h265", "3000k", "Full HD HEVC"),
        Scenario("1080p30-av1", "1920x1080", 30, 10, "av1", "2500k", "Full HD AV1"),
        Scenario("4k60-h264", "3840x2160", 60, 10, "h264", "20000k", "UHD H.264 at 60 fps (heavy)"),
    )
}

PLAIN = Scenario("", "1280x720", 30, 10, "h264", "2000k", "the plain defaults")
"""What a scenario name that is not a preset gets."""


def preset_for(name: str) -> Scenario:
    return SCENARIOS.get(name, PLAIN)
