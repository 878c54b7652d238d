"""Parsing of the human units users type: durations, bitrates, resolutions."""

from __future__ import annotations

import math
import re

from ffrtmp.errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_RESOLUTION = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


def parse_duration(text: str | float | int, *, field: str = "duration") -> float:
    """`500ms`, `5s`, `2m`, `1h`, `7d` or a plain number of seconds."""
    if isinstance(text, bool):
        raise InvalidInput(field, "expected a duration such as 500ms, 5s, 2m, 1h or 7d")
    if isinstance(text, int | float):
        try:
            value = float(text)
        except OverflowError:
            raise InvalidInput(field, "is far too large") from None
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise InvalidInput(field, f"{text!r} is not a duration (use e.g. 500ms, 5s, 2m, 1h, 7d)")
        value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(field, f"{text!r} must be a finite, non-negative duration")
    return value


def parse_bitrate(text: str | int, *, field: str = "bitrate") -> int:
    """`2000k`, `5M` or a plain number of bits per second (as FFmpeg reads it); returns kbit/s."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise InvalidInput(field, "expected a bitrate such as 2000k or 5M")
    match = _BITRATE.match(str(text)) if len(str(text)) <= 32 else None
    if not match:
        raise InvalidInput(field, f"{text!r} is not a bitrate (use e.g. 2000k or 5M)")
    number, unit = float(match.group(1)), match.group(2).lower()
    kbps = {"k": number, "m": number * 1000, "": number / 1000}[unit]
    if not 16 <= kbps <= 500_000:
        hint = f"; did you mean {text}k?" if unit == "" and 16 <= number <= 500_000 else ""
        raise InvalidInput(field, f"{text!r} is out of range (16k to 500M){hint}")
    return int(round(kbps))


def format_bitrate(kbps: int) -> str:
    return f"{kbps}k"


def parse_resolution(text: str, *, field: str = "resolution") -> tuple[int, int]:
    """`1280x720`; both sides even and between 16 and 8192 (what encoders accept)."""
    match = _RESOLUTION.match(str(text))
    if not match:
        raise InvalidInput(field, f"{text!r} is not WIDTHxHEIGHT (e.g. 1280x720)")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise InvalidInput(field, f"{text!r}: width and height must be between 16 and 8192")
    if width % 2 or height % 2:
        raise InvalidInput(field, f"{text!r}: width and height must be even")
    return width, height


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")


def parse_size(text: str | int, *, field: str = "size") -> int:
    """`512k`, `10M`, `2G` (powers of 1024; a trailing `B`/`iB` is allowed) or a plain number of bytes."""
    match = _SIZE.match(str(text)) if len(str(text)) <= 32 else None
    if match is None or isinstance(text, bool):
        raise InvalidInput(field, f"{text!r} is not a size (use e.g. 512k, 10M, 2G)")
    value = float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " ")
    if not 1 <= value <= 2**60:
        raise InvalidInput(field, f"{text!r} is out of range")
    return int(value)


def format_duration(seconds: float | None) -> str:
    """A short human form: 850ms, 12.3s, 4m05s, 2h03m."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def duration_text(seconds: float) -> str:
    """The shortest form `parse_duration` reads back exactly: 500ms, 5s, 10m, 24h, 7d (a default shown in --help)."""
    if seconds == 0:
        return "0"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def size_text(size: int) -> str:
    """The shortest form `parse_size` reads back exactly: 10M, 2G, or plain bytes."""
    for unit, power in (("T", 4), ("G", 3), ("M", 2), ("k", 1)):
        if size >= 1024**power and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)
