"""@db_task under every pool: solo (in-process), threads (see test_db_tasks) and prefork (a
worker subprocess on Redis), plus soft time limits, which only prefork enforces."""

from __future__ import annotations

import pytest
from celery import group
from celery.exceptions import SoftTimeLimitExceeded

from offload import create_worker_app

from .conftest import in_process_worker, query, runs, subprocess_env, tag
from .tasks_app import insert_items, sleepy, sleepy_db, where


def test_solo_pool_runs_db_tasks_on_one_loop(fw_settings, sqlite_url):
    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    with in_process_worker(app, pool="solo", concurrency=1):
        name = tag()
        assert insert_items.delay(name, ["s1"]).get(timeout=60)["inserted"] == 1
        results = group(where.s() for _ in range(5)).apply_async().get(timeout=60)
    assert len({(r["loop"], r["engine"]) for r in results}) == 1
    assert query(sqlite_url, "SELECT name FROM fw_items WHERE tag = :t", t=name) == [("s1",)]


@pytest.fixture
def prefork(worker_process, fw_settings, redis_url, pg_url):
    """A prefork worker (2 children) in a subprocess: Redis broker and results, PostgreSQL."""
    app = create_worker_app(settings=fw_settings(database_url=pg_url))
    from .conftest import purge

    purge(app)
    worker_process(subprocess_env(broker_url=redis_url, result_backend=redis_url,
                                  database_url=pg_url, worker_pool="prefork"),
                   pool="prefork", concurrency=2)
    return app, pg_url


@pytest.mark.slow
def test_prefork_children_each_keep_one_loop_and_engine(prefork, rds):
    _app, url = prefork
    name = tag()
    assert insert_items.delay(name, ["p1", "p2"]).get(timeout=60)["inserted"] == 2
    assert sorted(query(url, "SELECT name FROM fw_items WHERE tag = :t", t=name)) == [
        ("p1",), ("p2",)]
    results = group(where.s() for _ in range(16)).apply_async().get(timeout=60)
    by_pid: dict[int, set] = {}
    for r in results:
        by_pid.setdefault(r["pid"], set()).add((r["loop"], r["engine"]))
    assert all(len(v) == 1 for v in by_pid.values()), by_pid

    # A soft time limit cancels the coroutine: rolled back, failed at once, clearly worded
    slow = tag()
    result = sleepy_db.delay(slow)
    with pytest.raises(SoftTimeLimitExceeded, match="exceeded its soft time limit") as raised:
        result.get(timeout=60)
    assert "rolled back" in str(raised.value)
    assert len(runs(rds, slow)) == 1
    assert query(url, "SELECT name FROM fw_items WHERE tag = :t", t=slow) == []

    # the same kind of limit in a sync task, then the child's loop still serves db tasks
    sync = tag()
    with pytest.raises(SoftTimeLimitExceeded, match="it was stopped"):
        sleepy.delay(sync, 3).get(timeout=60)
    assert len(runs(rds, sync)) == 1
    again = group(where.s() for _ in range(6)).apply_async().get(timeout=60)
    for r in again:  # a child that ran before kept its loop and engine through the limit
        if r["pid"] in by_pid:
            assert by_pid[r["pid"]] == {(r["loop"], r["engine"])}


async def test_db_task_applied_from_a_running_event_loop(fw_settings, sqlite_url):
    # Given an async caller (its loop is running), apply() still runs the db task: on the
    # per-process background loop, not on the caller's loop
    import asyncio

    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    first = where.on_app(app).apply().get()
    second = where.on_app(app).apply().get()
    assert first["loop"] == second["loop"] != id(asyncio.get_running_loop())
    assert first["thread"] == "offload-async-bridge"
    assert first["engine"] == second["engine"]


def test_public_names():
    import offload

    for name in ("simple_task", "db_task", "TaskContext", "RetryPolicy",
                 "register_retry_policy", "StatsCounter", "TaskMetrics", "Timer"):
        assert name in offload.__all__ and getattr(offload, name) is not None
    from offload.extras import CircuitBreaker
    from offload.testing import TaskTestContext, sqlite_sessions

    assert CircuitBreaker and TaskTestContext and sqlite_sessions
