"""The `recommend` request: the cheapest measured encoder and bitrate for a quality target (ffrtmp/recommend.py),
from the caller's own history (a tenant's key sees its tenant's jobs only; an admin's, every job)."""

from __future__ import annotations

import math
import re
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import CODEC_ALIASES
from ffrtmp.master.auth import Principal
from ffrtmp.master.state import MasterState
from ffrtmp.recommend import TARGETS, Query, recommend
from ffrtmp.units import parse_resolution

_CODEC = re.compile(r"^[a-z0-9_]{2,40}$")
TARGET_RANGES = {"vmaf": (0.0, 100.0), "psnr": (0.0, 200.0)}
"""What a target may be: VMAF's scale; PSNR in dB (identical frames measure `inf`, stored as a large number)."""


def query_of(args: dict[str, Any]) -> Query:
    """The request's arguments, each checked (they come from the network)."""
    resolution = args.get("resolution")
    if not isinstance(resolution, str):
        raise InvalidInput("resolution", "must be WIDTHxHEIGHT, e.g. 1280x720")
    width, height = parse_resolution(resolution)
    fps = args.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 240:
        raise InvalidInput("fps", f"{fps!r} must be a whole number from 1 to 240")
    metric = args.get("metric")
    if metric not in TARGETS:
        raise InvalidInput("metric", f"{metric!r} is not one of {', '.join(TARGETS)}")
    target = args.get("target")
    low, high = TARGET_RANGES[metric]
    if isinstance(target, bool) or not isinstance(target, int | float) or not math.isfinite(target) \
            or not low < target <= high:
        raise InvalidInput(f"target-{metric}", f"{target!r} must be a number above {low:g} and at most {high:g}")
    codec = args.get("codec")
    if codec is not None:
        if not isinstance(codec, str) or not _CODEC.match(CODEC_ALIASES.get(codec.lower(), codec.lower())):
            raise InvalidInput("codec", f"{codec!r} must be h264, h265, vp9, av1 or an encoder name")
        codec = CODEC_ALIASES.get(codec.lower(), codec.lower())
    return Query(f"{width}x{height}", fps, TARGETS[metric], float(target), codec)


def recommend_op(state: MasterState, caller: Principal, args: dict[str, Any], now: float) -> Any:
    query = query_of(args)
    jobs = state.store.measured_jobs(query.resolution, query.fps, query.metric, codec=query.codec,
                                     tenant=caller.scope)
    return recommend(jobs, query)
