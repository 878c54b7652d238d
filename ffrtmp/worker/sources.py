"""What a job's input may be on this worker, and how it is handed to FFmpeg so that it means only that.

A local input is read only under the worker's `--input-root` dirs (none by default): it is resolved (links
followed) and must be a regular file inside a root, and FFmpeg gets it as `file:` + the absolute path, so no
name can read as a protocol (`concat:`, `subfile,`, `data:`, `pipe:`, `fd:` ...). FFmpeg also gets
`-protocol_whitelist` for the kind of input and `-format_whitelist` of media containers: the `tty` demuxer
(which renders any `*.txt` as video), playlists (`hls`, `concat`, which name further files or hosts) and
image sequences can never be chosen by probing. HTTP inputs follow no redirect (it could point inside).
A `--path-map` moves a path before any of this (pathmap.py): the mapped path meets the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ffrtmp.errors import FfrtmpError
from ffrtmp.worker.netpolicy import HostUnresolved, NetworkRefused, check_destination
from ffrtmp.worker.pathmap import PathMap, translate

MEDIA_DEMUXERS = ("mov", "matroska", "mpegts", "flv", "live_flv", "avi", "mpeg", "mxf", "ogg", "ivf", "nut", "asf",
                  "h264", "hevc", "m4v", "mp3", "aac", "wav", "flac", "yuv4mpegpipe", "rtsp")
"""Demuxers a job's input may be read with (FFmpeg matches any of a demuxer's names, e.g. mov for mp4)."""

PROTOCOLS = {"file": "file", "http": "http,tcp", "https": "https,http,tls,tcp", "rtmp": "rtmp,tcp",
             "rtmps": "rtmps,tls,tcp", "rtsp": "rtsp,rtp,udp,tcp", "srt": "srt", "udp": "udp", "tcp": "tcp"}
"""The FFmpeg protocols each kind of input needs, and no others."""


class SourceRefused(FfrtmpError):
    """This worker will not read the input (or push to the output) a job names."""


class SourceUnavailable(SourceRefused):
    """The input's or output's host cannot be resolved now (worth a retry, unlike a refusal)."""


@dataclass(frozen=True)
class InputPolicy:
    input_roots: tuple[Path, ...] = ()
    """Local inputs are read only under these dirs."""
    allow_private_network: bool = False
    """URL inputs and RTMP outputs may reach loopback, private and link-local addresses."""
    path_maps: tuple[PathMap, ...] = ()
    """Shared storage seen at another path here (`--path-map`): applied before the roots are checked."""


def is_url(source: str) -> bool:
    return "://" in source


def scheme_of(source: str) -> str:
    return urlsplit(source).scheme.lower() if is_url(source) else "file"


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_local_input(given: str, roots: tuple[Path, ...]) -> Path:
    """The regular file `given` names inside a root (a relative name is looked up in each root in turn)."""
    path = Path(given)
    resolved_roots = [root.resolve() for root in roots]
    candidates = [path] if path.is_absolute() else [root / path for root in resolved_roots]
    for candidate in candidates:
        resolved = candidate.resolve()
        if any(_within(resolved, root) for root in resolved_roots) and resolved.is_file():
            return resolved
    # One answer for "missing" and "outside": a job cannot learn which paths exist on the worker.
    raise SourceRefused(f"input {given!r} does not exist on this worker or is outside its --input-root dirs"
                        + ("" if roots else " (it has none: start it with --input-root DIR)"))


def check_source(given: str, policy: InputPolicy) -> str:
    """The input as the engines get it: a resolved absolute path, or a URL whose host the policy allows."""
    if is_url(given):
        _check_destination("input", given, policy)
        return given
    mapped = translate(given, policy.path_maps)
    if mapped is None:
        return str(resolve_local_input(given, policy.input_roots))
    try:
        return str(resolve_local_input(mapped, policy.input_roots))
    except SourceRefused as exc:
        raise SourceRefused(f"{exc} (--path-map read {given!r} as {mapped!r})") from None


def check_stream_output(url: str, policy: InputPolicy) -> None:
    _check_destination("output", url, policy)


def _check_destination(field: str, url: str, policy: InputPolicy) -> None:
    try:
        check_destination(field, url, allow_private=policy.allow_private_network)
    except HostUnresolved as exc:
        raise SourceUnavailable(str(exc)) from None
    except NetworkRefused as exc:
        raise SourceRefused(str(exc)) from None


def ffmpeg_input(source: str) -> list[str]:
    """FFmpeg's (and ffprobe's) options for reading `source` (a checked path or URL), ending with `-i URL`."""
    scheme = scheme_of(source)
    options = ["-protocol_whitelist", PROTOCOLS.get(scheme, scheme), "-format_whitelist", ",".join(MEDIA_DEMUXERS)]
    if scheme in ("http", "https"):
        options += ["-max_redirects", "0"]
    return [*options, "-i", source if is_url(source) else file_url(source)]


def file_url(path: str) -> str:
    """A local path as FFmpeg reads it: always the file protocol, always absolute."""
    return "file:" + str(Path(path).absolute())
