"""Shared storage mounted at another path on this worker: `--path-map FROM=TO`.

A `--upload never` job names its input as the submitter sees the shared storage (`/mnt/media/x.mp4`); a worker
that mounts the same share at `/srv/media` maps it with `--path-map /mnt/media=/srv/media` and reads
`/srv/media/x.mp4`. Mapping is lexical and by whole path components (`/mnt/media` maps `/mnt/media/x` but not
`/mnt/media2/x`), and the longest FROM wins. A map only moves a path, it never widens what a job may read: TO
must lie under an `--input-root` (checked at start), and the mapped path then meets every rule of a local input
(sources.resolve_local_input: links resolved, a regular file, inside a root).

What the worker can see (its roots, and each FROM) goes to the master in HELLO (`sees`), so that a job is given
only to a worker that can see its input (master/shared_storage.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ffrtmp.errors import InvalidInput
from ffrtmp.protocol import MAX_SEES
from ffrtmp.protocol import MAX_SEES_PATH as MAX_PATH

ENV_SEPARATOR = os.pathsep
"""Between FROM=TO pairs in FFRTMP_PATH_MAP (':', as between the dirs of FFRTMP_INPUT_ROOT and PATH)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class PathMap:
    source: PurePosixPath
    """FROM: the shared storage as jobs name it."""
    target: PurePosixPath
    """TO: where this worker sees it."""

    def __str__(self) -> str:
        return f"{self.source}={self.target}"

    def apply(self, path: PurePosixPath) -> PurePosixPath | None:
        """`path` seen through this map, or None when it is not under FROM."""
        if path != self.source and self.source not in path.parents:
            return None
        return self.target / path.relative_to(self.source)


def _absolute(text: str, what: str, given: str) -> PurePosixPath:
    if not text:
        raise InvalidInput("path-map", f"{given!r}: {what} is empty (give FROM=TO, both absolute paths)")
    if _CONTROL.search(text):
        raise InvalidInput("path-map", f"{given!r}: {what} must not contain control characters")
    path = PurePosixPath(text)
    if not path.is_absolute():
        raise InvalidInput("path-map", f"{given!r}: {what} {text!r} must be an absolute path")
    if ".." in path.parts:
        raise InvalidInput("path-map", f"{given!r}: {what} {text!r} must not contain '..'")
    if len(str(path)) > MAX_PATH:
        raise InvalidInput("path-map", f"{given!r}: {what} is longer than {MAX_PATH} characters")
    return path


def parse_path_map(given: str) -> PathMap:
    """`FROM=TO` (split at the first '=': FROM cannot hold one, TO can)."""
    source, equals, target = given.partition("=")
    if not equals:
        raise InvalidInput("path-map", f"{given!r} must be FROM=TO (e.g. /mnt/media=/srv/media)")
    return PathMap(_absolute(source.strip(" "), "FROM", given), _absolute(target.strip(" "), "TO", given))


def split_env(value: str) -> list[str]:
    """FFRTMP_PATH_MAP's pairs: `FROM=TO:FROM=TO` (empty entries are ignored)."""
    return [part for part in value.split(ENV_SEPARATOR) if part.strip()]


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def parse_path_maps(given: Iterable[str], input_roots: tuple[Path, ...]) -> tuple[PathMap, ...]:
    """The worker's maps, each one's TO under one of `input_roots` (resolved dirs), no FROM given twice."""
    maps: list[PathMap] = []
    for text in given:
        mapping = parse_path_map(text)
        if any(m.source == mapping.source for m in maps):
            raise InvalidInput("path-map", f"{text!r}: FROM {str(mapping.source)!r} is mapped twice")
        target = Path(mapping.target).resolve()
        if not any(_within(target, root) for root in input_roots):
            raise InvalidInput("path-map", f"{text!r}: TO {str(mapping.target)!r} is not under any --input-root, so "
                               f"jobs could read nothing there (add --input-root {mapping.target})")
        maps.append(mapping)
    return tuple(maps)


def translate(given: str, maps: tuple[PathMap, ...]) -> str | None:
    """The path this worker reads for a job's absolute local input `given` (longest FROM first), or None when no
    map applies (the path is read as given)."""
    path = PurePosixPath(given)
    if not maps or not path.is_absolute() or ".." in path.parts:
        return None  # '..' never reaches a worker (jobspec); a map must not give it a meaning either
    best = max((m for m in maps if m.apply(path) is not None), key=lambda m: len(m.source.parts), default=None)
    mapped = best.apply(path) if best is not None else None
    return str(mapped) if mapped is not None else None


def visible_prefixes(input_roots: Iterable[Path], maps: tuple[PathMap, ...]) -> list[str]:
    """What this worker tells the master it can see: each input root (as given and resolved: a job may name it
    either way, links are followed when it is read) and each map's FROM."""
    seen: dict[str, None] = {}
    for root in input_roots:
        for form in (Path(os.path.abspath(root)), Path(root).resolve()):
            seen[str(PurePosixPath(form))] = None
    for mapping in maps:
        seen[str(mapping.source)] = None
    return list(seen)


def check_announced(sees: list[str]) -> tuple[str, ...]:
    """`sees` as HELLO may carry it (the master refuses more than MAX_SEES, or longer paths)."""
    if len(sees) > MAX_SEES:
        raise InvalidInput("input-root", f"{len(sees)} input roots and --path-map FROM paths (counting a root "
                           f"reached through a link twice): at most {MAX_SEES}")
    for path in sees:
        if len(path) > MAX_PATH:
            raise InvalidInput("input-root", f"{path[:80]!r}…: longer than {MAX_PATH} characters")
    return tuple(sees)
