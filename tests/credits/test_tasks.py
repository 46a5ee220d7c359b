"""The four periodic tasks: called directly with a TaskTestContext, run by a real Celery
worker (Redis broker and results, PostgreSQL), declared in a scheduler app's beat schedule,
and dispatched by a real ``celery beat`` process."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from celery.schedules import crontab
from sqlalchemy import update

from offload import create_scheduler_app, create_worker_app, load_settings
from offload.apps.credits import service as ledger
from offload.apps.credits import tasks
from offload.apps.credits.devsink import LocalPostgrest
from offload.apps.credits.model import CreditTransaction, utcnow
from offload.db import session_maker
from offload.testing import TaskTestContext

from .conftest import check_ledger, count_unsynced, postgres_ledger, sqlite_ledger, with_engine

TASKS_MODULE = "offload.apps.credits.tasks"
QUEUES = ("high_priority", "default", "low_priority")


async def _seed(engine, tenant="t") -> None:
    """Two subscribers, one expired hold, one old pending deduction, one old api_usage."""
    async with session_maker(engine)() as s:
        await ledger.set_rate(s, "/op", 5)
        await ledger.open_account(s, tenant, "s", "standard")
        await ledger.open_account(s, tenant, "p", "premium")
        await ledger.add(s, tenant, "s", 50, "seed")
        await ledger.hold(s, tenant, "s", "/op", now=utcnow() - timedelta(days=1))
        await ledger.deduct(s, tenant, "s", 10, "old-fee", pending=True)
        await ledger.deduct(s, tenant, "s", 3, "old-usage", kind="api_usage", pending=True)
        # both pending a day already (older than any credits_pending_max_age the tests use)
        await s.execute(update(CreditTransaction).where(CreditTransaction.status == "pending")
                        .values(created_at=utcnow() - timedelta(days=1)))
        await s.commit()


def _summary(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("status", "task_id")}


# --- level 1: the task functions with a TaskTestContext -------------------------------------


async def test_each_task_happy_path_in_a_test_context(tmp_path, make_settings):
    engine = await sqlite_ledger(tmp_path)
    await _seed(engine)
    settings = make_settings(credits_pending_max_age=3600, credits_batch_size=2)

    async def run(task, **kwargs):
        async with session_maker(engine)() as session:
            ctx = TaskTestContext(session=session, settings=settings, task_name=task.name)
            result = await task.run_with(ctx, **kwargs)
            await session.commit()
            return result, ctx

    released, ctx = await run(tasks.cleanup_expired_holds)
    assert released["status"] == "success"
    assert _summary(released) == {"released": 1, "credits_returned": 5, "skipped": 0}
    assert ctx.commits >= 1
    allocated, _ = await run(tasks.allocate_monthly, period="2025-05")
    assert _summary(allocated) == {"allocated": 2, "credits": 600, "already_allocated": 0,
                                   "period": "2025-05"}
    settled, _ = await run(tasks.process_pending)
    assert _summary(settled) == {"completed": 1, "reverted": 1, "credits_refunded": 10,
                                 "skipped": 0}
    nothing, _ = await run(tasks.sync_usage)
    assert _summary(nothing) == {"synced": 0, "skipped": 0, "sink": "none"}
    balances = await check_ledger(engine)
    assert balances[("t", "s")] == 50 + 100 - 3
    await engine.dispose()


# --- level 2: a real worker --------------------------------------------------------------------


def _run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def receiver():
    with LocalPostgrest(api_key="k") as server:
        yield server


@pytest.fixture(scope="module")
def worker_app(tmp_path_factory, redis_url, postgres_url, receiver):
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("credits-worker"),
        broker_url=redis_url, result_backend=redis_url, database_url=postgres_url,
        task_packages=[], task_modules=[TASKS_MODULE], worker_pool="threads",
        credits_pending_max_age=3600, credits_batch_size=2,
        analytics_sink="http", analytics_url=receiver.url, analytics_api_key="k",
        analytics_table="usage",
    )
    app = create_worker_app(settings=settings, name="credits-test-worker")
    from celery.contrib.testing.worker import start_worker

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING"):
        yield app
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def pg_ledger(postgres_url):
    async def prepare():
        engine = await postgres_ledger(postgres_url)
        await _seed(engine)
        await engine.dispose()

    _run(prepare())
    yield postgres_url
    _run(with_engine(postgres_url, check_ledger))


def _get(app, task, timeout=30, **options):
    result = task.on_app(app).apply_async(**options)
    return result.get(timeout=timeout)


@pytest.mark.postgres
@pytest.mark.redis
def test_the_tasks_on_a_real_worker(worker_app, pg_ledger, receiver):
    released = _get(worker_app, tasks.cleanup_expired_holds)
    assert (released["released"], released["credits_returned"]) == (1, 5)
    period = utcnow().strftime("%Y-%m")
    first = _get(worker_app, tasks.allocate_monthly, dedup_key="beat-1")
    assert (first["allocated"], first["credits"], first["period"]) == (2, 600, period)
    # a rerun and a second beat really run again (own dedup keys: the first run's claim may
    # outlive its result by a moment) and still allocate once per user and period
    for run in ("rerun", "beat-2"):
        again = _get(worker_app, tasks.allocate_monthly, dedup_key=run)
        assert again["task_id"] != first["task_id"]
        assert (again["allocated"], again["already_allocated"]) == (0, 2)
    settled = _get(worker_app, tasks.process_pending)
    assert (settled["completed"], settled["reverted"]) == (1, 1)
    synced = _get(worker_app, tasks.sync_usage)
    assert synced["synced"] == len(receiver.rows("usage")) > 0
    balances = _run(with_engine(pg_ledger, check_ledger))
    assert balances[("t", "s")] == 50 + 100 - 3
    assert balances[("t", "p")] == 500


@pytest.mark.postgres
@pytest.mark.redis
def test_sync_with_a_failing_sink_retries_and_loses_nothing(worker_app, pg_ledger, receiver):
    receiver.fail_with = 503
    try:
        result = tasks.sync_usage.on_app(worker_app).apply_async(dedup_key="failing-run")
        deadline = time.monotonic() + 20
        while result.state != "RETRY" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert result.state == "RETRY"  # retriable: scheduled again with backoff
        unsynced = _run(with_engine(pg_ledger, count_unsynced))
        assert unsynced > 0
    finally:
        receiver.fail_with = None
        result.revoke()
    synced = _get(worker_app, tasks.sync_usage, dedup_key="next-run")
    assert synced["synced"] == unsynced
    assert _run(with_engine(pg_ledger, count_unsynced)) == 0


# --- level 3: the beat schedule -------------------------------------------------------------


def test_scheduler_app_declares_the_four_beat_entries(make_settings):
    app = create_scheduler_app(settings=make_settings(task_packages=["offload.apps.credits"]))
    schedule = app.conf.beat_schedule
    expected = {
        "credits.cleanup_expired_holds": (crontab(minute=0, hour="*/3"), "low_priority"),
        "credits.allocate_monthly": (crontab(minute=0, hour=0, day_of_month=1), "default"),
        "credits.process_pending": (crontab(minute="*/15"), "low_priority"),
        "credits.sync_usage": (crontab(minute="*/10"), "low_priority"),
    }
    assert {name for name in schedule if name.startswith("credits.")} == set(expected)
    for name, (cron, queue) in expected.items():
        entry = schedule[name]
        assert entry["task"] == name
        assert entry["schedule"] == cron, name
        assert entry["options"]["queue"] == queue


def test_beat_overrides_replace_a_schedule(make_settings):
    settings = make_settings(task_packages=["offload.apps.credits"],
                             beat_overrides={"credits.sync_usage": 2})
    schedule = create_scheduler_app(settings=settings).conf.beat_schedule
    assert schedule["credits.sync_usage"]["schedule"] == timedelta(seconds=2)
    assert schedule["credits.process_pending"]["schedule"] == crontab(minute="*/15")
