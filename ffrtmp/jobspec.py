"""What a job asks for, checked field by field before anything is stored.

`validate_submission` is the one gate: the client calls it for early, local errors and the master calls it
again as the authority. Every problem raises `InvalidInput` naming the field; nothing half-valid passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ffrtmp import defaults
from ffrtmp.errors import InvalidInput
from ffrtmp.scenarios import preset_for
from ffrtmp.units import format_bitrate, parse_bitrate, parse_duration, parse_resolution

QUEUE_WEIGHTS = {"live": 10, "default": 5, "batch": 1}
PRIORITY_WEIGHTS = {"high": 3, "medium": 2, "low": 1}
ENGINES = ("auto", "ffmpeg", "gstreamer", "null")
QUALITY_MODES = ("none", "basic", "vmaf")
"""`basic`: PSNR and SSIM of the output against its source; `vmaf` adds VMAF (needs FFmpeg with libvmaf)."""
CODECS = ("h264", "h265", "vp9", "av1")
CODEC_ALIASES = {"hevc": "h265", "avc": "h264", "x264": "h264", "x265": "h265"}
OUTPUT_SUFFIXES = (".mp4", ".mkv", ".webm", ".flv", ".ts", ".mov", ".m4v")
STREAM_SCHEMES = ("rtmp://", "rtmps://")
INPUT_SCHEMES = ("http://", "https://", "rtmp://", "rtmps://", "rtsp://", "srt://", "udp://", "tcp://")
QUERYLESS_SCHEMES = ("tcp", "udp", "srt")
"""FFmpeg takes socket options from these URLs' queries."""
LISTENING_OPTIONS = frozenset({"listen", "listen_timeout"})
"""Query options that would make a worker's FFmpeg listen, refused in any URL."""
_PROTOCOL_PREFIX = re.compile(r"^[A-Za-z0-9+.\-]+:")
"""What FFmpeg reads as `protocol:` at the start of a name (concat:, data:, pipe:, fd:, file:, lavfi: ...)."""

GROUP_LABEL = "group"
"""The label that names a job's group (a sweep's id, `jobs sweep`): it marks the job, it asks nothing of a worker."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_ENCODER = re.compile(r"^[a-z0-9_]{2,40}$")
_PRESET = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

FIELDS = frozenset({"scenario", "bitrate", "resolution", "fps", "duration", "codec", "preset", "engine",
                    "input", "input_file", "upload", "output", "queue", "priority", "max_retries", "timeout",
                    "labels", "quality"})
UPLOAD_MODES = ("auto", "always", "never")
"""`upload`: what a client does with a local `input` (docs/files.md); checked here, never kept in the job."""


@dataclass
class JobSpec:
    """A checked submission. `params` is what the worker needs to build its command line."""

    scenario: str
    engine: str
    queue: str
    priority: str
    params: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    max_retries: int | None = None
    timeout: float | None = None

    @property
    def weight(self) -> int:
        return QUEUE_WEIGHTS[self.queue] * PRIORITY_WEIGHTS[self.priority]

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "engine": self.engine, "queue": self.queue,
                "priority": self.priority, "params": self.params, "labels": self.labels,
                "max_retries": self.max_retries, "timeout": self.timeout}


def check_name(field_name: str, value: Any) -> str:
    """Scenario and node names: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(field_name, f"{value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def default_timeout(duration: float) -> float:
    """A job's deadline when it names none: generous for slow software encodes of long sources."""
    return 120.0 + 20.0 * duration


def _choice(name: str, value: Any, allowed: tuple[str, ...] | dict[str, int]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _fps(value: Any) -> int:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= 240:
        raise InvalidInput("fps", f"{value!r} must be a whole number from 1 to 240")
    return int(number)


def _duration(value: Any) -> float:
    seconds = parse_duration(value, field="duration")
    if not 0 < seconds <= defaults.MAX_DURATION:
        raise InvalidInput("duration", f"{value!r} must be more than 0 and at most {defaults.MAX_DURATION:g} s")
    return seconds


def _codec(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("codec", f"{value!r} must be h264, h265, vp9, av1 or an encoder name")
    codec = CODEC_ALIASES.get(value.lower(), value.lower())
    if codec not in CODECS and not _ENCODER.match(codec):
        raise InvalidInput("codec", f"{value!r} must be h264, h265, vp9, av1 or an encoder name such as h264_nvenc")
    return codec


def _text(name: str, value: Any, limit: int = 4096) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(name, "must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(name, f"is longer than {limit} characters")
    if _CONTROL.search(value):
        raise InvalidInput(name, "must not contain control characters")
    return value


def _input(value: Any) -> str:
    text = _text("input", value)
    if text.startswith("-"):
        raise InvalidInput("input", f"{text!r} must not start with '-' (it would read as an option)")
    if "://" in text:
        if not text.lower().startswith(INPUT_SCHEMES):
            raise InvalidInput("input", f"{text!r}: URL scheme not supported (use {', '.join(INPUT_SCHEMES)})")
        check_url("input", text)
        return text
    if _PROTOCOL_PREFIX.match(text) or text.startswith("subfile,"):
        raise InvalidInput("input", f"{text!r} reads as an FFmpeg protocol ({text.split(':', 1)[0].split(',')[0]}:); "
                           "give a file path under the worker's --input-root or a URL")
    if ".." in PurePosixPath(text).parts:
        raise InvalidInput("input", f"{text!r} escapes the worker's input roots ('..' is not allowed)")
    return text


CLIENT_SIDE = None
"""`output_roots` on a client: only the master knows its `--output-root`s, so absolute outputs are left to it."""


def check_file_ref(field_name: str, value: Any) -> dict[str, Any]:
    """A stored file named by content (docs/files.md): `{"sha256", "size", "name"}`, nothing else."""
    if not isinstance(value, dict):
        raise InvalidInput(field_name, "must be an object {sha256, size, name}")
    unknown = sorted(str(k) for k in value if k not in ("sha256", "size", "name"))
    if unknown:
        raise InvalidInput(f"{field_name}.{unknown[0]}", "unknown field (known: name, sha256, size)")
    sha256, size, name = value.get("sha256"), value.get("size"), value.get("name", "")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise InvalidInput(f"{field_name}.sha256", "must be 64 lowercase hex digits")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 2**53:
        raise InvalidInput(f"{field_name}.size", "must be a whole number of bytes, 0 or more")
    if not isinstance(name, str) or len(name) > 255 or "/" in name or "\\" in name or _CONTROL.search(name) \
            or name in (".", ".."):
        raise InvalidInput(f"{field_name}.name", "must be a file name (no '/', at most 255 characters)")
    return {"sha256": sha256, "size": size, "name": name}


def check_url(field_name: str, url: str) -> None:
    """A URL FFmpeg or GStreamer may open for a job: a host, and no query option that makes it listen or bind.

    FFmpeg reads options from the query of tcp://, udp:// and srt:// URLs (`listen`, `localport`, `mode=listener`),
    so those take no query at all; `listen` is refused in any URL. Where the host points (private networks) is the
    worker's check, at run time (ffrtmp.worker.netpolicy).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise InvalidInput(field_name, f"{url!r} is not a valid URL: {exc}") from None
    if not host:
        raise InvalidInput(field_name, f"{url!r} names no host")
    scheme = parts.scheme.lower()
    if parts.query and scheme in QUERYLESS_SCHEMES:
        raise InvalidInput(field_name, f"{url!r}: {scheme}:// URLs take no '?' options here (they set up sockets)")
    keys = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if keys & LISTENING_OPTIONS:
        raise InvalidInput(field_name, f"{url!r}: the URL option {sorted(keys & LISTENING_OPTIONS)[0]!r} is not "
                           "allowed (a job may not make a worker listen)")


def check_output(value: Any, output_roots: tuple[str, ...] | None = ()) -> str:
    """An RTMP URL, a path relative to the job's own output directory, or an absolute path under an allowed root
    (any absolute path when `output_roots` is `CLIENT_SIDE`: the master decides)."""
    text = _text("output", value)
    if text.lower().startswith(STREAM_SCHEMES):
        check_url("output", text)
        return text
    if "://" in text:
        raise InvalidInput("output", f"{text!r}: only rtmp:// and rtmps:// URLs or file paths are accepted")
    if text.startswith("-"):
        raise InvalidInput("output", f"{text!r} must not start with '-' (it would read as an option)")
    path = PurePosixPath(text)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InvalidInput("output", f"{text!r} must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    if path.is_absolute():
        if output_roots is not None and not any(_within(path, PurePosixPath(root)) for root in output_roots):
            raise InvalidInput("output", f"{text!r} is outside what workers allow: give a path relative to the "
                               "worker's work dir, or start the master with --output-root")
        return text
    if ".." in path.parts:
        raise InvalidInput("output", f"{text!r} escapes the job's output directory ('..' is not allowed)")
    if _PROTOCOL_PREFIX.match(text):
        # such a directory would make the same name pass as an "existing" input elsewhere (H2, docs/design.md)
        raise InvalidInput("output", f"{text!r} reads as an FFmpeg protocol ({text.split(':', 1)[0]}:); "
                           "give a path without ':' in its first part")
    return text


def check_quality(value: Any, output: str | None, engine: str) -> str:
    """The quality measurement a job asks for: `basic` by default for file outputs; a live stream or a null
    job writes no file to compare, so it takes `none` and only `none`."""
    live = output is not None and output.lower().startswith(STREAM_SCHEMES)
    measurable = not live and engine != "null"
    if value is None:
        return "basic" if measurable else "none"
    mode = _choice("quality", value, QUALITY_MODES)
    if mode != "none" and not measurable:
        what = "a live rtmp:// output" if live else "the null engine (it writes no output)"
        raise InvalidInput("quality", f"{mode!r} cannot be measured for {what}: use none")
    return mode


def _within(path: PurePosixPath, root: PurePosixPath) -> bool:
    return ".." not in path.parts and (path == root or root in path.parents)


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidInput("labels", "must be a map of KEY=VALUE")
    if len(value) > 32:
        raise InvalidInput("labels", "at most 32 labels")
    labels: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise InvalidInput("labels", f"{key!r} is not a valid label key (letters, digits, . _ - /)")
        labels[key] = _text(f"labels.{key}", item, limit=255) if item != "" else ""
    return labels


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    """`KEY=VALUE` options as given on the command line."""
    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput("label", f"{pair!r} must be KEY=VALUE")
        labels[key.strip()] = value.strip()
    return _labels(labels)


def validate_submission(raw: Any, *, output_roots: tuple[str, ...] | None = ()) -> JobSpec:
    """Check one submission (a mapping of the `jobs submit` options) and fill the scenario's defaults."""
    if not isinstance(raw, dict):
        raise InvalidInput("job", "must be an object of submit options")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (known: {', '.join(sorted(FIELDS))})")
    given = {k: v for k, v in raw.items() if v is not None}
    if "scenario" not in given:
        raise InvalidInput("scenario", "is required (see `ffrtmp scenarios`)")
    scenario = check_name("scenario", given["scenario"])
    preset = preset_for(scenario)
    width, height = parse_resolution(given.get("resolution", preset.resolution))
    params: dict[str, Any] = {
        "resolution": f"{width}x{height}",
        "fps": _fps(given.get("fps", preset.fps)),
        "duration": _duration(given.get("duration", preset.duration)),
        "codec": _codec(given.get("codec", preset.codec)),
        "bitrate": format_bitrate(parse_bitrate(given.get("bitrate", preset.bitrate))),
        "preset": None,
        "input": _input(given["input"]) if "input" in given else None,
        "output": check_output(given["output"], output_roots) if "output" in given else None,
    }
    if "input_file" in given:
        if "input" in given:
            raise InvalidInput("input_file", "give either input (a path on the workers or a URL) or input_file "
                               "(a stored file), not both")
        params["input_file"] = check_file_ref("input_file", given["input_file"])
    if "upload" in given:  # the client's instruction: checked, not kept (the job names what it reads)
        _choice("upload", given["upload"], UPLOAD_MODES)
    if "preset" in given:
        if not isinstance(given["preset"], str) or not _PRESET.match(given["preset"]):
            raise InvalidInput("preset", f"{given['preset']!r} must be an encoder preset name such as veryfast")
        params["preset"] = given["preset"]
    max_retries = given.get("max_retries")
    if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)
                                    or not 0 <= max_retries <= 100):
        raise InvalidInput("max_retries", f"{max_retries!r} must be a whole number from 0 to 100")
    timeout = None
    if "timeout" in given:
        timeout = parse_duration(given["timeout"], field="timeout")
        if not 0 < timeout <= 7 * 86400:
            raise InvalidInput("timeout", f"{given['timeout']!r} must be more than 0 and at most 7d")
    engine = _choice("engine", given.get("engine", "auto"), ENGINES)
    params["quality"] = check_quality(given.get("quality"), params["output"], engine)
    return JobSpec(
        scenario=scenario,
        engine=engine,
        queue=_choice("queue", given.get("queue", "default"), QUEUE_WEIGHTS),
        priority=_choice("priority", given.get("priority", "medium"), PRIORITY_WEIGHTS),
        params=params,
        labels=_labels(given.get("labels", {})),
        max_retries=max_retries,
        timeout=timeout,
    )
