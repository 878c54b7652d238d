"""ffrtmp.jobspec: the one gate every submission passes; each problem names its field."""

from __future__ import annotations

from typing import Any

import pytest

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import (
    CLIENT_SIDE,
    FIELDS,
    PRIORITY_WEIGHTS,
    QUEUE_WEIGHTS,
    JobSpec,
    check_name,
    check_output,
    default_timeout,
    parse_labels,
    validate_submission,
)
from ffrtmp.scenarios import PLAIN, SCENARIOS


def submit(**options: Any) -> JobSpec:
    return validate_submission({"scenario": "test1", **options})


def field_of(raw: Any, **kwargs: Any) -> str:
    """The field named by the InvalidInput that `raw` must raise."""
    with pytest.raises(InvalidInput) as info:
        validate_submission(raw, **kwargs)
    return info.value.field


def bad_field(**options: Any) -> str:
    return field_of({"scenario": "test1", **options})


# ---- defaults and presets ---------------------------------------------------------------------------


def test_preset_fills_every_default() -> None:
    spec = submit()
    preset = SCENARIOS["test1"]
    assert spec.scenario == "test1"
    assert spec.params == {
        "resolution": preset.resolution,
        "fps": preset.fps,
        "duration": float(preset.duration),
        "codec": preset.codec,
        "bitrate": preset.bitrate,
        "preset": None,
        "input": None,
        "output": None,
        "quality": "basic",
    }
    assert (spec.engine, spec.queue, spec.priority) == ("auto", "default", "medium")
    assert spec.labels == {}
    assert spec.max_retries is None
    assert spec.timeout is None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_preset_is_itself_valid(name: str) -> None:
    spec = validate_submission({"scenario": name})
    assert spec.params["resolution"] == SCENARIOS[name].resolution
    assert spec.params["codec"] == SCENARIOS[name].codec


def test_unknown_scenario_name_is_a_label_with_plain_defaults() -> None:
    spec = validate_submission({"scenario": "my-nightly.run_1"})
    assert spec.scenario == "my-nightly.run_1"
    assert spec.params["resolution"] == PLAIN.resolution
    assert spec.params["bitrate"] == PLAIN.bitrate
    assert spec.params["duration"] == PLAIN.duration


def test_explicit_options_win_over_the_preset() -> None:
    spec = submit(resolution="1920x1080", fps=60, duration="2m", codec="vp9", bitrate="5M", preset="veryfast",
                  engine="ffmpeg", queue="live", priority="high", input="in.mp4", output="out/x.mkv",
                  max_retries=0, timeout="30s", labels={"gpu": "yes"})
    assert spec.params == {"resolution": "1920x1080", "fps": 60, "duration": 120.0, "codec": "vp9",
                           "bitrate": "5000k", "preset": "veryfast", "input": "in.mp4", "output": "out/x.mkv",
                           "quality": "basic"}
    assert (spec.engine, spec.queue, spec.priority) == ("ffmpeg", "live", "high")
    assert spec.labels == {"gpu": "yes"}
    assert spec.max_retries == 0
    assert spec.timeout == 30.0


def test_none_values_count_as_not_given() -> None:
    spec = submit(fps=None, queue=None, codec=None)
    assert spec.params["fps"] == SCENARIOS["test1"].fps
    assert spec.queue == "default"


@pytest.mark.parametrize(("given", "codec"), [("H264", "h264"), ("hevc", "h265"), ("x264", "h264"),
                                              ("avc", "h264"), ("h264_nvenc", "h264_nvenc"), ("libx265", "libx265")])
def test_codec_aliases_and_encoder_names(given: str, codec: str) -> None:
    assert submit(codec=given).params["codec"] == codec


def test_fps_as_whole_number_string_or_float_is_accepted() -> None:
    assert submit(fps="25").params["fps"] == 25
    assert submit(fps=30.0).params["fps"] == 30


def test_to_dict_has_every_part() -> None:
    data = submit(labels={"a": "b"}).to_dict()
    assert set(data) == {"scenario", "engine", "queue", "priority", "params", "labels", "max_retries", "timeout"}


def test_default_timeout_grows_with_duration() -> None:
    assert default_timeout(0) == 120.0
    assert default_timeout(10) > default_timeout(1)


# ---- bad fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"bitrate": "abc"}, "bitrate"),
        ({"bitrate": "1k"}, "bitrate"),
        ({"resolution": "0x0"}, "resolution"),
        ({"resolution": "641x360"}, "resolution"),
        ({"resolution": 1280}, "resolution"),
        ({"fps": -1}, "fps"),
        ({"fps": 0}, "fps"),
        ({"fps": 241}, "fps"),
        ({"fps": 1.5}, "fps"),
        ({"fps": True}, "fps"),
        ({"fps": "fast"}, "fps"),
        ({"fps": "nan"}, "fps"),
        ({"fps": [30]}, "fps"),
        ({"queue": "urgent"}, "queue"),
        ({"queue": ["live"]}, "queue"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": 3}, "priority"),
        ({"engine": "x"}, "engine"),
        ({"engine": "FFMPEG"}, "engine"),
        ({"duration": 1e9}, "duration"),
        ({"duration": 0}, "duration"),
        ({"duration": "0s"}, "duration"),
        ({"duration": "abc"}, "duration"),
        ({"duration": -5}, "duration"),
        ({"duration": True}, "duration"),
        ({"codec": "h264;rm -rf /"}, "codec"),
        ({"codec": "$(reboot)"}, "codec"),
        ({"codec": "h264 -y"}, "codec"),
        ({"codec": "`id`"}, "codec"),
        ({"codec": ""}, "codec"),
        ({"codec": 264}, "codec"),
        ({"preset": "very fast"}, "preset"),
        ({"preset": "fast;rm"}, "preset"),
        ({"preset": "p" * 33}, "preset"),
        ({"preset": 5}, "preset"),
    ],
)
def test_bad_field_is_named(options: dict[str, Any], field: str) -> None:
    assert bad_field(**options) == field


def test_error_message_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        submit(bitrate="abc")
    assert str(info.value).startswith("bitrate: ")


def test_duration_at_most_max_duration() -> None:
    assert submit(duration=defaults.MAX_DURATION).params["duration"] == defaults.MAX_DURATION
    assert bad_field(duration=defaults.MAX_DURATION + 1) == "duration"


def test_fps_bounds_are_inclusive() -> None:
    assert submit(fps=1).params["fps"] == 1
    assert submit(fps=240).params["fps"] == 240


def test_unknown_field_is_named() -> None:
    assert bad_field(colour="red") == "colour"


def test_submission_must_be_an_object() -> None:
    assert field_of(["scenario", "test1"]) == "job"
    assert field_of("test1") == "job"


@pytest.mark.parametrize("raw", [{}, {"scenario": None}, {"fps": 30}])
def test_missing_scenario(raw: dict[str, Any]) -> None:
    assert field_of(raw) == "scenario"


@pytest.mark.parametrize("name", ["my scenario", ";rm -rf /", "", "-test1", ".hidden", "a" * 65, "x/y", 5,
                                  "tëst", "a\nb"])
def test_bad_scenario_names(name: Any) -> None:
    assert field_of({"scenario": name}) == "scenario"


# ---- input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["clip.mp4", "/media/clip.mov", "http://cdn.example/a.mp4", "RTMP://host/app/k",
                                   "srt://host:9000", "udp://239.0.0.1:1234"])
def test_input_accepts_paths_and_supported_urls(value: str) -> None:
    assert submit(input=value).params["input"] == value


@pytest.mark.parametrize("value", ["-i", "-f lavfi", "file:///etc/passwd", "ftp://host/x.mp4", "gopher://x",
                                   "", "   ", "a\x00b", "clip\n.mp4", 5, "x" * 4097])
def test_input_rejected(value: Any) -> None:
    assert bad_field(input=value) == "input"


# ---- output -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x.mp4", "out/x.MKV", "a.webm", "b.flv", "c.ts", "d.mov", "e.m4v",
                                   "rtmp://live.example/app/key", "rtmps://live.example/app/key"])
def test_output_accepted(value: str) -> None:
    assert submit(output=value).params["output"] == value


@pytest.mark.parametrize("value", ["../x.mp4", "out/../../x.mp4", "a/../x.mp4", "x.exe", "x", "x.mp4.sh",
                                   "http://host/x.mp4", "file:///tmp/x.mp4", "-y.mp4", "", "x\n.mp4"])
def test_output_rejected(value: str) -> None:
    assert bad_field(output=value) == "output"


def test_absolute_output_refused_without_roots() -> None:
    assert bad_field(output="/abs/x.mp4") == "output"


def test_absolute_output_accepted_under_a_root() -> None:
    spec = validate_submission({"scenario": "test1", "output": "/abs/x.mp4"}, output_roots=("/abs",))
    assert spec.params["output"] == "/abs/x.mp4"
    spec = validate_submission({"scenario": "test1", "output": "/abs/deep/x.mp4"}, output_roots=("/other", "/abs/"))
    assert spec.params["output"] == "/abs/deep/x.mp4"


@pytest.mark.parametrize("value", ["/absolute/../etc/x.mp4", "/abs/../etc/x.mp4", "/abstract/x.mp4", "/etc/x.mp4"])
def test_absolute_output_outside_or_escaping_a_root_is_refused(value: str) -> None:
    assert field_of({"scenario": "test1", "output": value}, output_roots=("/abs", "/absolute")) == "output"


def test_check_output_direct() -> None:
    assert check_output("rtmp://h/app/k") == "rtmp://h/app/k"
    with pytest.raises(InvalidInput):
        check_output("/abs/x.mp4")


# ---- labels -----------------------------------------------------------------------------------------


def test_valid_labels() -> None:
    labels = {"gpu": "nvidia", "zone": "eu-west/1", "k8s.io/role": "edge", "empty": ""}
    assert submit(labels=labels).labels == labels


@pytest.mark.parametrize("labels", [["gpu=yes"], "gpu=yes", {"bad key": "x"}, {"": "x"}, {"-gpu": "x"},
                                    {"k;rm": "x"}, {"a" * 64: "x"}, {f"k{i}": "v" for i in range(33)}])
def test_bad_labels_name_the_labels_field(labels: Any) -> None:
    assert bad_field(labels=labels) == "labels"


@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak", "tab\there", "bell\x07", "del\x7f", "x" * 256, 5, "  "])
def test_bad_label_values_name_the_label(value: Any) -> None:
    assert bad_field(labels={"gpu": value}) == "labels.gpu"


def test_parse_labels() -> None:
    assert parse_labels(["gpu=yes", " zone = eu ", "empty=", "url=a=b"]) == {
        "gpu": "yes", "zone": "eu", "empty": "", "url": "a=b"}
    assert parse_labels([]) == {}
    assert parse_labels(None) == {}


def test_parse_labels_later_pair_wins() -> None:
    assert parse_labels(["a=1", "a=2"]) == {"a": "2"}


def test_parse_labels_needs_key_value() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_labels(["gpu"])
    assert info.value.field == "label"


def test_parse_labels_rejects_bad_key() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_labels(["bad key=x"])
    assert info.value.field == "labels"


# ---- max_retries and timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 3, 100])
def test_max_retries_in_range(value: int) -> None:
    assert submit(max_retries=value).max_retries == value


@pytest.mark.parametrize("value", [-1, 101, 1.5, 2.0, "3", True, False, [3]])
def test_max_retries_out_of_range_or_wrong_type(value: Any) -> None:
    assert bad_field(max_retries=value) == "max_retries"


@pytest.mark.parametrize(("value", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("7d", 604800.0),
                                                (90, 90.0), (1.5, 1.5)])
def test_timeout_parsing(value: Any, seconds: float) -> None:
    assert submit(timeout=value).timeout == pytest.approx(seconds)


@pytest.mark.parametrize("value", [0, "0s", "8d", "abc", -1, True, "1e3"])
def test_bad_timeout(value: Any) -> None:
    assert bad_field(timeout=value) == "timeout"


@pytest.mark.parametrize("field", ["fps", "duration", "bitrate", "timeout"])
def test_integer_too_big_for_a_float_is_invalid_input(field: str) -> None:
    """JSON allows arbitrarily large integers; they must be refused as bad input, never crash the master."""
    assert bad_field(**{field: 10**400}) == field


# ---- weight (docs/design.md) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "priority", "weight"),
    [
        ("live", "high", 30), ("live", "medium", 20), ("live", "low", 10),
        ("default", "high", 15), ("default", "medium", 10), ("default", "low", 5),
        ("batch", "high", 3), ("batch", "medium", 2), ("batch", "low", 1),
    ],
)
def test_weight_is_queue_weight_times_priority_weight(queue: str, priority: str, weight: int) -> None:
    assert submit(queue=queue, priority=priority).weight == weight


def test_weight_tables_match_spec() -> None:
    assert QUEUE_WEIGHTS == {"live": 10, "default": 5, "batch": 1}
    assert PRIORITY_WEIGHTS == {"high": 3, "medium": 2, "low": 1}


def test_default_weight() -> None:
    assert submit().weight == 10


# ---- check_name -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "worker-1", "node_2.local", "A" * 64, "9lives"])
def test_check_name_accepts(name: str) -> None:
    assert check_name("name", name) == name


@pytest.mark.parametrize("name", ["", "-x", "_x", ".x", "a b", "a" * 65, "a/b", "a;b", None, 5, "é"])
def test_check_name_rejects_naming_the_field(name: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name("node", name)
    assert info.value.field == "node"


def test_fields_constant_lists_every_option() -> None:
    assert {"scenario", "bitrate", "resolution", "fps", "duration", "codec", "preset", "engine", "input", "input_file",
            "upload", "output", "queue", "priority", "max_retries", "timeout", "labels", "quality"} == FIELDS


def test_a_client_leaves_absolute_outputs_to_the_master() -> None:
    """F13: the client cannot know the master's --output-root; it checks the rest and lets the master decide."""
    spec = validate_submission({"scenario": "test1", "output": "/abs/x.mp4"}, output_roots=CLIENT_SIDE)
    assert spec.params["output"] == "/abs/x.mp4"
    for still_wrong in ("/abs/x.txt", "-x.mp4", "../x.mp4"):
        assert field_of({"scenario": "test1", "output": still_wrong}, output_roots=CLIENT_SIDE) == "output"
