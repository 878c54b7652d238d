"""The master's size limits on a job (`--max-resolution`, `--max-fps`, `--max-duration`, `--max-bitrate`).

The spec's own bounds (8192x8192, 240 fps, a day, 500 Mbit/s) are what encoders accept; these are what a
shared cluster affords: one 8K 240 fps day-long job would hold a worker for a day and fill its disk. The
defaults fit every common job; an operator raises them with the options (or `FFRTMP_MAX_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import JobSpec
from ffrtmp.units import format_bitrate, parse_bitrate, parse_resolution


@dataclass(frozen=True)
class JobLimits:
    width: int = 3840
    height: int = 2160
    fps: int = 120
    duration: float = 6 * 3600.0
    bitrate_kbps: int = 50_000

    @classmethod
    def parse(cls, resolution: str, fps: int, duration: float, bitrate: str) -> JobLimits:
        width, height = parse_resolution(resolution, field="max-resolution")
        if not 1 <= fps <= 240:
            raise InvalidInput("max-fps", f"{fps} must be from 1 to 240")
        if not 0 < duration <= defaults.MAX_DURATION:
            raise InvalidInput("max-duration", f"must be more than 0 and at most {defaults.MAX_DURATION:g} s")
        return cls(width, height, fps, duration, parse_bitrate(bitrate, field="max-bitrate"))

    def check(self, spec: JobSpec, field_prefix: str = "") -> None:
        """InvalidInput naming the field when `spec` asks for more than this master allows."""
        params = spec.params
        width, height = parse_resolution(params["resolution"])
        # Either orientation: 2160x3840 fits a 3840x2160 limit.
        if width * height > self.width * self.height or max(width, height) > max(self.width, self.height):
            raise InvalidInput(f"{field_prefix}resolution", f"{params['resolution']} is above this master's limit "
                               f"{self.width}x{self.height} (master --max-resolution)")
        if params["fps"] > self.fps:
            raise InvalidInput(f"{field_prefix}fps", f"{params['fps']} is above this master's limit {self.fps} "
                               "(master --max-fps)")
        if params["duration"] > self.duration:
            raise InvalidInput(f"{field_prefix}duration", f"{params['duration']:g} s is above this master's limit "
                               f"{self.duration:g} s (master --max-duration)")
        if parse_bitrate(params["bitrate"]) > self.bitrate_kbps:
            raise InvalidInput(f"{field_prefix}bitrate", f"{params['bitrate']} is above this master's limit "
                               f"{format_bitrate(self.bitrate_kbps)} (master --max-bitrate)")
