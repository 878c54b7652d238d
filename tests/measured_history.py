"""Completed jobs with measured quality, stored through the real Store API (the store's contract for what a
worker's RESULT leaves behind), for the history `ffrtmp recommend` and `report` read."""

from __future__ import annotations

from typing import Any

from ffrtmp.jobspec import validate_submission
from ffrtmp.master.store import Store

T0 = 1_700_000_000.0


def store_measured(store: Store, *, codec: str = "h264", bitrate: str = "1000k", resolution: str = "160x120",
                   fps: int = 30, duration: float = 1.0, preset: str | None = None, scenario: str = "sweep",
                   tenant: str = "", labels: dict[str, str] | None = None, now: float = T0,
                   **metrics: Any) -> str:
    """One completed job with these params and `metrics` (psnr_db=…, encoder=…, cost=…); returns its id."""
    raw = {"scenario": scenario, "codec": codec, "bitrate": bitrate, "resolution": resolution, "fps": fps,
           "duration": duration, "labels": labels or {}, **({"preset": preset} if preset else {})}
    with store.transaction():
        (job_id,) = store.insert_jobs([validate_submission(raw)], now, 0, tenant=tenant)
        store.assign_job(job_id, "n1", now)
        store.mark_running(job_id, 1, now)
        assert store.finish_job(job_id, 1, "completed", now + duration, metrics=metrics) is not None
    return job_id
