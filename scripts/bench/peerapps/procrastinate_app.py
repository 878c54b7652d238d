"""Procrastinate: the no-op task on its default psycopg 3 connector (the database in BENCH_PG_URL).

Workers start as Procrastinate's docs start them, `procrastinate --app=procrastinate_app.app worker`, with
every default (concurrency 1, LISTEN/NOTIFY on, jobs kept on completion). The task is `async` (Procrastinate
runs a sync task in a thread; an async one on its loop, the cheaper path) and reports as every peer does.
"""

import os

from benchtask import record
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_PG_URL"]))


@app.task(name="noop")
async def noop(tag: str) -> None:
    record(tag)
