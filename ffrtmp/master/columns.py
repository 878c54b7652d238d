"""JSON columns of the master database: how a value goes in and comes out."""

from __future__ import annotations

import json
from typing import Any


def from_json(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
