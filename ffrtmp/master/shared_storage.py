"""Which workers can see a job's shared-storage input, so that it goes only to one that can read it.

A job whose input is a path on the workers (`--upload never`: not a URL, not a stored file) is given only to a
worker whose HELLO `sees` holds that path's directory or a dir above it: its `--input-root`s and `--path-map`
FROMs (worker/pathmap.py). Otherwise it waits, and its reason names the directory nobody sees. The check is
lexical: it routes, it does not guard (the worker still resolves links and holds every input to its roots). A
worker that sends no `sees` (from before it) is taken to see every path, as all workers were then.

The requirement goes into the dispatch lanes' key (store/dispatch.py `needs`) as the input's directory. Why the
directory: a lane is judged by its key alone (a key no free node fits is skipped whole, and only the head of the
others is read), so equal keys must mean that every node fits both jobs or neither. Whether a worker sees a path
is decided by dir prefixes, so two inputs in one directory are seen by exactly the same workers. A coarser key
(the first components, or a prefix matched at submit) breaks that when a root lies deeper than the key: the head
of a lane that nobody sees would stand in front of jobs behind it that someone does; and the prefixes known
change as workers come and go, while a key is fixed at submit. A finer one (the file) is a lane per job. So a
batch from one folder is one lane, and a submitter who spreads jobs over many folders gets no more lanes than
distinct labels already give it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.protocol import MAX_SEES, MAX_SEES_PATH

NEED = "sees"
"""The key of this requirement in a job-shaped requirement group (store/dispatch.py `needs_of`)."""
SIGHT = "can see "
"""How this requirement's wait reasons start ("no connected worker can see /shared/in (...)")."""
RELATIVE = ""
"""The "directory" of a relative input: a worker looks it up in each of its roots, so any root will do."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def input_dir(params: Mapping[str, Any]) -> str | None:
    """The directory of a job's shared-storage input (RELATIVE for a relative path); None: it has none."""
    source = params.get("input")
    if not isinstance(source, str) or not source or "://" in source:
        return None
    return _directory(source)


@functools.lru_cache(maxsize=4096)
def _directory(source: str) -> str:
    """Cached: placement asks for each job and node on every pass."""
    path = PurePosixPath(source)
    return str(path.parent) if path.is_absolute() else RELATIVE


def can_see(sees: Collection[str] | None, directory: str) -> bool:
    """True when a worker that sees `sees` (None: unknown, so anything) can see inputs in `directory`."""
    if sees is None:
        return True
    if directory == RELATIVE:
        return bool(sees)
    return any(directory == prefix or directory.startswith(prefix.rstrip("/") + "/") for prefix in sees)


def sight_problem(job: Mapping[str, Any], sees: Collection[str] | None) -> str | None:
    """What a worker that sees `sees` lacks for `job` (a job row, or a requirement group), as placement words it."""
    directory = job[NEED] if NEED in job else input_dir(job.get("params", {}))
    if directory is None or can_see(sees, directory):
        return None
    if directory == RELATIVE:
        return f"{SIGHT}relative input paths (add --input-root)"
    return f"{SIGHT}{directory} (add --input-root or --path-map)"


def check_sees(value: Any) -> tuple[str, ...] | None:
    """HELLO's `sees`, checked and normalised: at most MAX_SEES absolute paths; None when it was not sent."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("sees", "must be a list of absolute paths")
    if len(value) > MAX_SEES:
        raise InvalidInput("sees", f"{len(value)} paths: at most {MAX_SEES}")
    seen: dict[str, None] = {}
    for path in value:
        if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_SEES_PATH:
            raise InvalidInput("sees", f"each must be an absolute path of at most {MAX_SEES_PATH} characters")
        if _CONTROL.search(path) or ".." in PurePosixPath(path).parts:
            raise InvalidInput("sees", "a path must hold no control characters and no '..'")
        seen[str(PurePosixPath(path))] = None
    return tuple(seen)
