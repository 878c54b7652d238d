"""JSON columns of the master database: how a value goes in and comes out."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every column: `json.dumps` with options builds a new one per call (it shows per job)."""
_EMPTY = {"{}": dict, "[]": list}


def from_json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    empty = _EMPTY.get(text)  # most labels and avoid lists are empty: no parser needed
    return empty() if empty is not None else json.loads(text)


def to_json(value: Any) -> str:
    return _ENCODER.encode(value)
