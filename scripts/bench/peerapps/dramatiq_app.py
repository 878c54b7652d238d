"""Dramatiq: the no-op actor on the Redis broker, default middleware, no retries."""

import os

import dramatiq
from benchtask import record
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(tag: str) -> None:
    record(tag)
