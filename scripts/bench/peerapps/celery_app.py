"""Celery: the no-op task, tuned as Celery's "Optimizing" guide says for many short tasks.

Results are ignored, events off, and the prefetch multiplier high (the guide suggests 64 or 128 when
throughput matters); workers run with --without-gossip --without-mingle --without-heartbeat.
"""

import os

from benchtask import record
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "64")),
                worker_send_task_events=False, task_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="noop")
def noop(tag: str) -> None:
    record(tag)
