"""Tasks the framework tests run on real workers (in-process and in subprocesses).

Side effects that a test checks (attempt counters, timestamps, pids) go to Redis, under keys
that carry a tag chosen by the test, so every test and process sees them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import redis
import structlog
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from offload import RetryPolicy, TaskContext, db_task, simple_task

metadata = MetaData()
items = Table(
    "fw_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tag", String(64), nullable=False),
    Column("name", String(64), nullable=False, unique=True),
)

FAST = RetryPolicy(max_retries=2, base_delay=0.3, max_delay=2, jitter=0)

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def store(ctx: TaskContext) -> redis.Redis:
    """A Redis client on the app's result store (the tests use Redis results)."""
    url = ctx.settings.broker  # the tests always use a Redis broker
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url)
    return client


def note(ctx: TaskContext, tag: str) -> int:
    """Count one run of ``tag`` and keep its time and retry number."""
    client = store(ctx)
    client.rpush(f"fw:{tag}:runs", f"{time.time()}|{ctx.retries}|{os.getpid()}")
    return int(client.incr(f"fw:{tag}:count"))


@simple_task(name="fw.add", queue="high_priority")
def add(ctx: TaskContext, a: int, b: int) -> dict:
    ctx.log_info("adding", a=a, b=b)
    return ctx.success_result(sum=a + b)


@simple_task(name="fw.flaky", retry_policy=FAST)
def flaky(ctx: TaskContext, tag: str, failures: int, error: str = "ConnectionError") -> dict:
    note(ctx, tag)
    if ctx.retries < failures:
        raise {"ConnectionError": ConnectionError, "TimeoutError": TimeoutError,
               "ValueError": ValueError}[error](f"passing failure {ctx.retries}")
    return ctx.success_result(retries=ctx.retries)


@simple_task(name="fw.always_down", retry_policy="standard")
def always_down(ctx: TaskContext, tag: str) -> None:
    note(ctx, tag)
    raise ConnectionError("service down")


@simple_task(name="fw.not_found", retry_policy=FAST)
def not_found(ctx: TaskContext, tag: str, user_id: int) -> None:
    note(ctx, tag)
    raise ctx.not_found_error("no such user", user_id=user_id)


@simple_task(name="fw.bad_uuid", retry_policy=FAST)
def bad_uuid(ctx: TaskContext, tag: str, value: str) -> str:
    note(ctx, tag)
    return str(ctx.validate_uuid(value, "repository_id"))


@simple_task(name="fw.progress", retry_policy="no_retry")
def progress(ctx: TaskContext, tag: str, steps: int) -> dict:
    """Report progress on every step; hold at the middle until the test opens the gate."""
    client = store(ctx)
    for step in range(steps + 1):
        stage = "first half" if step < steps // 2 else "second half"
        ctx.report_progress(100 * step / steps, stage, step=step)
        if step == steps // 2:
            client.set(f"fw:{tag}:halfway", 1)
            deadline = time.monotonic() + 20
            while not client.get(f"fw:{tag}:gate") and time.monotonic() < deadline:
                time.sleep(0.02)
    return ctx.success_result(steps=steps)


@simple_task(name="fw.log_lines", retry_policy="no_retry")
def log_lines(ctx: TaskContext, tenant: str | None = None, bind_tenant: str | None = None):
    if bind_tenant:
        ctx.bind_log_context(tenant=bind_tenant)
    ctx.log_info("from the context")
    structlog.get_logger("plain.structlog").info("from a structlog logger")
    import logging

    logging.getLogger("plain.stdlib").warning("from a stdlib logger")
    return ctx.success_result()


@db_task(name="fw.db_log_lines", retry_policy="no_retry")
async def db_log_lines(ctx: TaskContext, tenant_id: int | None = None,
                       bind_repo: str | None = None) -> dict:
    if bind_repo:
        ctx.bind_log_context(repo=bind_repo)
    await ctx.session.execute(select(1))
    ctx.log_info("db from the context")
    structlog.get_logger("plain.structlog").info("db from a structlog logger")
    return ctx.success_result()


@simple_task(name="fw.sleepy", retry_policy="standard", soft_time_limit=1, time_limit=4)
def sleepy(ctx: TaskContext, tag: str, seconds: float) -> str:
    note(ctx, tag)
    time.sleep(seconds)
    return "woke up"


# --- database tasks -----------------------------------------------------------------------------
@db_task(name="fw.insert", retry_policy="no_retry")
async def insert_items(ctx: TaskContext, tag: str, names: list[str]) -> dict:
    await ctx.session.execute(insert(items), [{"tag": tag, "name": n} for n in names])
    return ctx.success_result(inserted=len(names))


@db_task(name="fw.insert_then_fail", retry_policy=FAST)
async def insert_then_fail(ctx: TaskContext, tag: str, name: str, error: str) -> None:
    note(ctx, tag)
    await ctx.session.execute(insert(items), [{"tag": tag, "name": f"{name}-{ctx.retries}"}])
    await ctx.session.flush()
    if error == "value":
        raise ValueError("fails after writing")
    raise ctx.validation_error("invalid after writing", name=name)


@db_task(name="fw.duplicate", retry_policy=FAST)
async def duplicate(ctx: TaskContext, tag: str, name: str) -> None:
    note(ctx, tag)
    await ctx.session.execute(insert(items), [{"tag": tag, "name": name}])
    await ctx.session.flush()
    await ctx.session.execute(insert(items), [{"tag": tag, "name": name}])


@db_task(name="fw.batches", retry_policy="no_retry")
async def batches(ctx: TaskContext, tag: str, count: int, batch_size: int,
                  fail_at_batch: int | None = None) -> dict:
    stats = ctx.create_stats_counter()
    number = 0
    async for batch in ctx.iter_batches(range(count), batch_size=batch_size):
        number += 1
        await ctx.session.execute(
            insert(items), [{"tag": tag, "name": f"{tag}-{i}"} for i in batch]
        )
        if number == fail_at_batch:
            raise ValueError(f"batch {number} breaks")
        stats.increment("processed", len(batch))
        stats.increment("batches")
        await ctx.commit_batch()
        ctx.report_progress(100 * stats["processed"] / count, "inserting")
    return ctx.success_result(**stats.to_dict())


@db_task(name="fw.bad_sql", retry_policy=FAST)
async def bad_sql(ctx: TaskContext, tag: str) -> None:
    """A statement the database refuses (no such table): a DBAPIError, retried."""
    from sqlalchemy import text

    note(ctx, tag)
    await ctx.session.execute(insert(items), [{"tag": tag, "name": f"{tag}-{ctx.retries}"}])
    await ctx.session.execute(text("SELECT * FROM fw_no_such_table"))


@db_task(name="fw.count", retry_policy="no_retry")
async def count_items(ctx: TaskContext, tag: str) -> int:
    result = await ctx.session.execute(select(items.c.name).where(items.c.tag == tag))
    return len(result.all())


@db_task(name="fw.where", retry_policy="no_retry")
async def where(ctx: TaskContext) -> dict:
    """Which process, thread, loop and engine ran this (loop and engine reuse checks)."""
    from offload.tasks.session import engine_for

    await ctx.session.execute(select(1))
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "loop": id(asyncio.get_running_loop()),
        "engine": id(engine_for(ctx.settings.database)),
    }


@db_task(name="fw.sleepy_db", retry_policy="standard", soft_time_limit=1, time_limit=4)
async def sleepy_db(ctx: TaskContext, tag: str) -> str:
    note(ctx, tag)
    await ctx.session.execute(insert(items), [{"tag": tag, "name": f"{tag}-sleepy"}])
    await ctx.session.flush()
    await asyncio.sleep(10)
    return "woke up"


# --- dedup ----------------------------------------------------------------------------------------
def wait_gate(ctx: TaskContext, tag: str, timeout: float = 20) -> None:
    client = store(ctx)
    deadline = time.monotonic() + timeout
    while not client.get(f"fw:{tag}:gate") and time.monotonic() < deadline:
        time.sleep(0.02)


@simple_task(name="fw.dedup_slow", retry_policy="no_retry")
def dedup_slow(ctx: TaskContext, tag: str) -> int:
    count = note(ctx, tag)
    wait_gate(ctx, tag)
    return count


@simple_task(name="fw.dedup_fail", retry_policy=RetryPolicy(max_retries=1, base_delay=1.0,
                                                            max_delay=1.0, jitter=0))
def dedup_fail(ctx: TaskContext, tag: str) -> None:
    note(ctx, tag)
    raise ConnectionError("still down")


@simple_task(name="fw.dedup_declared", retry_policy="no_retry", dedup=True)
def dedup_declared(ctx: TaskContext, tag: str) -> int:
    count = note(ctx, tag)
    wait_gate(ctx, tag)
    return count
