"""Why this machine's workers cannot run a job, and how to get what is missing (for `ffrtmp demo`).

The master says what no connected worker has (`no connected worker has engine ffmpeg`); this adds what the
user can do about it, from the same lookup a local worker makes (`detect`, without the encoder test runs).
"""

from __future__ import annotations

from typing import Any

from ffrtmp.master.scheduler import ENCODING_ENGINES
from ffrtmp.worker.capabilities import Capabilities
from ffrtmp.worker.encoders import CODEC_OF

UNRUNNABLE_PREFIXES = ("no connected worker has", "no worker is connected")
"""Wait reasons that no amount of waiting fixes while the same workers stay (a free slot does)."""


def unrunnable(job: dict[str, Any]) -> str | None:
    """The master's wait reason of a pending job that none of the connected workers can run, else None."""
    reason = job.get("reason")
    if job.get("status") != "pending" or not reason:
        return None
    return reason if str(reason).startswith(UNRUNNABLE_PREFIXES) else None


def how_to_get(job: dict[str, Any], local: Capabilities) -> str:
    """What the local workers lack for `job`, and a fix that works."""
    engine = job.get("engine") or "auto"
    codec = (job.get("params") or {}).get("codec")
    engines = ENCODING_ENGINES if engine == "auto" else (engine,)
    missing = [f"{name}: {local.missing[name]}" for name in engines if name in local.missing]
    if len(missing) == len(engines):  # not one engine the job could use is here
        return "; ".join(missing)
    libraries = sorted(name for name, of in CODEC_OF.items() if of == codec)
    where = f"the FFmpeg at {local.ffmpeg} ({local.ffmpeg_source})" if local.ffmpeg else "this machine"
    return (f"{where} has no usable {codec} encoder (e.g. {', '.join(libraries) or codec}): use an FFmpeg built with "
            "one (--ffmpeg PATH; with none on PATH the bundled one, which has x264, x265, vpx and aom, is used); "
            "`ffrtmp worker --probe` says why each encoder is unusable")
