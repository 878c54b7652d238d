"""A finished file output becomes the attempt's stored output: checked (`verify.py`), then uploaded with the
job and attempt, so the master can fence it (only the attempt it runs now may store an output; a stale one
gets 409). What the RESULT then reports is `output_file`: `{"name", "size", "sha256"}`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffrtmp.errors import Conflict, FfrtmpError
from ffrtmp.files.transfer import upload
from ffrtmp.worker.fetch import DataChannel
from ffrtmp.worker.verify import verify_output


class StaleAttempt(FfrtmpError):
    """The master refused the output: this attempt is no longer the job's current one."""


@dataclass(frozen=True)
class Delivery:
    """What to deliver: the file written, the name it is published under, the media seconds it should hold."""

    path: Path
    name: str
    expected_duration: float


def deliver(channel: DataChannel, ffmpeg: str, job: str, attempt: int, delivery: Delivery,
            canceled: threading.Event) -> dict[str, Any]:
    """Verify and upload; returns the `output_file` the RESULT reports. Raises OutputInvalid, StaleAttempt,
    NoDataChannel or a transfer's error. A canceled attempt uploads nothing."""
    channel.need()  # no data channel: said before the output is decoded to verify it
    verified = verify_output(ffmpeg, delivery.path, delivery.expected_duration)
    if canceled.is_set():
        raise StaleAttempt("the attempt was canceled before its output was stored")
    try:
        stored = channel.following(
            lambda peer, moved: upload(peer, delivery.path, name=delivery.name, sha256=verified.sha256, job=job,
                                       attempt=attempt, timeout=channel.timeout, moved=moved))
    except Conflict as exc:
        raise StaleAttempt(f"the master refused this attempt's output: {exc}") from None
    return {"name": stored.name, "size": stored.size, "sha256": stored.sha256}
