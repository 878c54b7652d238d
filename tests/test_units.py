"""ffrtmp.units: the human units users type (durations, bitrates, resolutions)."""

from __future__ import annotations

import math

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.units import format_bitrate, format_duration, parse_bitrate, parse_duration, parse_resolution

# ---- parse_duration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("7d", 7 * 86400.0),
        ("1.5s", 1.5),
        ("10", 10.0),
        ("0", 0.0),
        (" 5 s ", 5.0),
        (3, 3.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts_units_and_plain_numbers(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_returns_float() -> None:
    assert isinstance(parse_duration(3), float)
    assert isinstance(parse_duration("3s"), float)


@pytest.mark.parametrize("text", ["abc", "", "5x", "5 sec", "s", "-5s", "1e3", "5s5", "ms500"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(text)
    assert info.value.field == "duration"


def test_parse_duration_error_names_the_given_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration("soon", field="node-timeout")
    assert info.value.field == "node-timeout"
    assert "node-timeout" in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, -math.inf, math.nan, True, False])
def test_parse_duration_rejects_negative_non_finite_and_bool(value: float) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, field="timeout")
    assert info.value.field == "timeout"


def test_parse_duration_huge_string_is_rejected_not_inf() -> None:
    with pytest.raises(InvalidInput):
        parse_duration("9" * 400)


def test_parse_duration_huge_integer_is_invalid_input() -> None:
    """An int too big for a float (e.g. from a JSON request) must be a clear error, not an OverflowError."""
    with pytest.raises(InvalidInput) as info:
        parse_duration(10**400)
    assert info.value.field == "duration"


# ---- parse_bitrate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kbps"),
    [
        ("2000k", 2000),
        ("2000K", 2000),
        ("5M", 5000),
        ("5m", 5000),
        ("1.5M", 1500),
        (" 800 k ", 800),
        ("2000000", 2000),
        ("16k", 16),
        ("500M", 500_000),
        (2_000_000, 2000),
    ],
)
def test_parse_bitrate_returns_kbps(text: str | int, kbps: int) -> None:
    assert parse_bitrate(text) == kbps


@pytest.mark.parametrize("text", ["abc", "", "2000kb", "5G", "-5M", "k", "2000 kbps"])
def test_parse_bitrate_rejects_garbage_naming_bitrate(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_bitrate(text)
    assert info.value.field == "bitrate"


@pytest.mark.parametrize("text", ["15k", "0", "0k", "1000", "501M", "1000000k"])
def test_parse_bitrate_rejects_out_of_range(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_bitrate(text)
    assert info.value.field == "bitrate"
    assert "range" in info.value.problem


def test_parse_bitrate_rejects_bool() -> None:
    with pytest.raises(InvalidInput):
        parse_bitrate(True)


def test_parse_bitrate_custom_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_bitrate("fast", field="jobs[2].bitrate")
    assert info.value.field == "jobs[2].bitrate"


def test_parse_bitrate_huge_integer_is_invalid_input() -> None:
    """An int too big for a float division must be a clear error, not an OverflowError."""
    with pytest.raises(InvalidInput) as info:
        parse_bitrate(10**400)
    assert info.value.field == "bitrate"


def test_format_bitrate_roundtrips() -> None:
    assert format_bitrate(2500) == "2500k"
    assert parse_bitrate(format_bitrate(2500)) == 2500


# ---- parse_resolution -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1280x720", (1280, 720)),
        ("1920X1080", (1920, 1080)),
        (" 640 x 360 ", (640, 360)),
        ("16x16", (16, 16)),
        ("8192x8192", (8192, 8192)),
    ],
)
def test_parse_resolution_accepts_even_sizes_in_range(text: str, size: tuple[int, int]) -> None:
    assert parse_resolution(text) == size


@pytest.mark.parametrize("text", ["0x0", "14x720", "1280x8194", "99999x720"])
def test_parse_resolution_rejects_out_of_range(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_resolution(text)
    assert info.value.field == "resolution"


@pytest.mark.parametrize("text", ["641x360", "640x361", "1281x721"])
def test_parse_resolution_rejects_odd_sizes(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_resolution(text)
    assert info.value.field == "resolution"
    assert "even" in info.value.problem


@pytest.mark.parametrize("text", ["abc", "", "1280", "1280x", "x720", "1280x720x3", "-1280x720", "1280*720",
                                  "1280x720;rm -rf /", "123456x720"])
def test_parse_resolution_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_resolution(text)
    assert info.value.field == "resolution"


def test_parse_resolution_custom_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_resolution("big", field="size")
    assert info.value.field == "size"


# ---- format_duration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0ms"),
        (0.85, "850ms"),
        (1, "1.0s"),
        (12.34, "12.3s"),
        (60, "1m00s"),
        (245, "4m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7380, "2h03m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
