"""Huey: the no-op task on RedisHuey (blocking BRPOP reads, the default); no result is stored for None."""

import os

from benchtask import record
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop(tag: str) -> None:
    record(tag)
