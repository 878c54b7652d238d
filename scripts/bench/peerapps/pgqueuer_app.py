"""PgQueuer: the no-op entrypoint on an asyncpg connection (AsyncpgDriver), as PgQueuer's quick start makes it.

Workers start as its docs start them, `pgq run pgqueuer_app:main`, with every default (batch size 10,
LISTEN/NOTIFY, no concurrency limit). pgqueuer 1.x wants the factory to be an async context manager (its
README's plain `async def main() -> PgQueuer` is refused with an example of this form). The payload is the
probe's tag (none for a throughput task).
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from benchtask import record
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        record(job.payload.decode() if job.payload else "")

    try:
        yield pgq
    finally:
        await connection.close()
