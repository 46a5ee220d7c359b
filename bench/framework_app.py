"""The worker app of ``bench/framework.py`` (settings come from OFFLOAD_*, set by the bench).

The same work as an offload task and as a bare Celery task on the same app, so both run on
one worker with one configuration.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Column, Integer, MetaData, Table, insert

from offload import TaskContext, create_worker_app, db_task, load_settings, simple_task
from offload.db import create_engine

metadata = MetaData()
rows = Table("bench_rows", metadata,
             Column("id", Integer, primary_key=True, autoincrement=True),
             Column("n", Integer, nullable=False))


@simple_task(name="bench.offload.noop", retry_policy="no_retry")
def offload_noop(ctx: TaskContext) -> None:
    return None


@db_task(name="bench.offload.insert", retry_policy="no_retry")
async def offload_insert(ctx: TaskContext, n: int) -> None:
    await ctx.session.execute(insert(rows).values(n=n))


app = create_worker_app(settings=load_settings())


@app.task(name="bench.bare.noop")
def bare_noop() -> None:
    return None


@app.task(name="bench.bare.insert")
def bare_insert(n: int) -> None:
    """What one writes by hand without the framework: a loop and an engine per call."""

    async def run() -> None:
        engine = create_engine(app.offload_settings.database)
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(rows).values(n=n))
        finally:
            await engine.dispose()

    asyncio.run(run())
