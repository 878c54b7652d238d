"""The no-op task body every peer runs, so all of them report completion the same way.

A throughput task increments the Redis counter `bench:done`; a latency probe (a non-empty tag) pushes
"TAG START PID" onto the list `bench:probe`, which the client BLPOPs: one Redis round trip per task either way.
The connection is made lazily per process (forked and spawned workers get their own).
"""

from __future__ import annotations

import os
import threading
import time

import redis

DONE = "bench:done"
PROBES = "bench:probe"

_lock = threading.Lock()
_client: tuple[int, redis.Redis] | None = None


def connection() -> redis.Redis:
    global _client
    with _lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
        return _client[1]


def record(tag: str) -> None:
    started = time.time()
    if tag:
        connection().rpush(PROBES, f"{tag} {started!r} {os.getpid()}")
    else:
        connection().incr(DONE)
