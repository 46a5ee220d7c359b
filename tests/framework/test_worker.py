"""Simple tasks on a real worker (threads pool, Redis broker and results): results, retries
with their real delays, errors that fail at once, progress, log context."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import datetime

import pytest
import structlog

from offload import TaskNotFoundError, TaskValidationError, create_worker_app
from offload.tasks.policies import get_retry_policy

from .conftest import in_process_worker, json_log_lines, retries_published, runs, tag, wait_for
from .tasks_app import (
    FAST,
    add,
    always_down,
    bad_uuid,
    db_log_lines,
    flaky,
    log_lines,
    not_found,
    progress,
)


def countdown_of(at: float, headers: dict) -> float:
    """Seconds between publishing a retry and its ETA."""
    return datetime.fromisoformat(headers["eta"]).timestamp() - at


@pytest.fixture(scope="module")
def app(fw_settings, sqlite_url):
    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    with in_process_worker(app, pool="threads", concurrency=4):
        yield app


def test_success_result_and_queue(app):
    result = add.delay(2, 3)
    value = result.get(timeout=60)
    assert value == {"status": "success", "task_id": result.id, "sum": 5}
    # result_extended: the stored meta names the task and its queue
    meta = app.backend.get_task_meta(result.id)
    assert meta["name"] == "fw.add" and meta["queue"] == "high_priority"


def test_retries_follow_the_policy_with_real_delays(app, rds, published):
    name = tag()
    result = flaky.delay(name, 2)
    assert result.get(timeout=30) == {"status": "success", "task_id": result.id, "retries": 2}
    seen = runs(rds, name)
    assert [r[1] for r in seen] == [0, 1, 2]
    # each retry was published with the policy's countdown (FAST: 0.3 s then 0.6 s, no jitter)
    retries = retries_published(published, result.id)
    assert [h["retries"] for _, h in retries] == [1, 2]
    for (at, headers), expected in zip(retries, (0.3, 0.6), strict=True):
        assert countdown_of(at, headers) == pytest.approx(expected, abs=0.05)
    # and the worker honoured it: the next run came no earlier (a loaded machine may be late)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert gaps[0] >= FAST.countdown(0) * 0.95 and gaps[1] >= FAST.countdown(1) * 0.95
    assert max(gaps) < 10


def test_standard_policy_waits_about_60_then_120_then_240_seconds(app, rds, published):
    # Not Celery's retry_backoff (~1 s first): retry n is published n times later with an ETA
    # of base * 2**n (60, 120, 240 s), spread by the ±10 % jitter
    policy = get_retry_policy("standard")
    countdowns = []
    for retries in range(policy.max_retries):
        # Given a run that already failed `retries` times (Celery's own retries header)
        result = always_down.apply_async((tag(),), retries=retries)
        at, headers = wait_for(lambda r=result, n=retries: [
            (at, h) for at, h in retries_published(published, r.id) if h["retries"] == n + 1])[0]
        countdown = countdown_of(at, headers)
        low, high = policy.bounds(retries)
        assert low - 0.5 <= countdown <= high, (retries, countdown)
        countdowns.append(countdown)
        wait_for(lambda r=result: r.state == "RETRY")
    assert countdowns[0] == pytest.approx(60, rel=0.11)
    assert countdowns[1] == pytest.approx(120, rel=0.11)
    assert any(abs(c - policy.delay(n)) > 0.05 for n, c in enumerate(countdowns))  # jitter
    # The run after the last retry fails for good, and publishes nothing more
    name = tag()
    last = always_down.apply_async((name,), retries=policy.max_retries)
    with pytest.raises(ConnectionError, match="service down"):
        last.get(timeout=60)
    assert last.state == "FAILURE" and len(runs(rds, name)) == 1
    assert [h["retries"] for _, h in retries_published(published, last.id)] == [3]  # ours


@pytest.mark.parametrize("error", ["ConnectionError", "TimeoutError", "ValueError"])
def test_retriable_errors_fail_after_the_last_retry(app, rds, error):
    name = tag()
    result = flaky.delay(name, 10, error)
    with pytest.raises(Exception) as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == error
    assert result.state == "FAILURE"
    assert len(runs(rds, name)) == FAST.max_retries + 1


def test_non_retriable_error_fails_once_with_its_context(app, rds, published):
    name = tag()
    with json_log_lines() as lines:
        result = not_found.delay(name, 42)
        with pytest.raises(TaskNotFoundError) as raised:
            result.get(timeout=60)
    # the stored failure carries the error's context, and nothing was retried
    assert str(raised.value) == "no such user (user_id=42)"
    assert result.state == "FAILURE"
    assert len(runs(rds, name)) == 1
    assert retries_published(published, result.id) == []
    # the worker's error line carries it as fields
    failed = [line for line in lines() if line.get("task_id") == result.id
              and line["event"] == "task failed: not retriable"]
    assert len(failed) == 1
    assert failed[0]["level"] == "error" and failed[0]["task_name"] == "fw.not_found"
    assert failed[0]["user_id"] == 42 and failed[0]["error_type"] == "TaskNotFoundError"
    assert failed[0]["error"] == "no such user"


def test_retry_log_line_says_when_and_why(app):
    with json_log_lines() as lines:
        result = flaky.delay(tag(), 1, "TimeoutError")
        result.get(timeout=60)
    retried = [line for line in lines() if line.get("task_id") == result.id
               and line["event"] == "task will be retried"]
    assert len(retried) == 1 and retried[0]["level"] == "warning"
    assert retried[0]["attempt"] == 1 and retried[0]["max_retries"] == FAST.max_retries
    assert retried[0]["countdown"] == 0.3 and retried[0]["error_type"] == "TimeoutError"


def test_validation_error_fails_once(app, rds):
    name = tag()
    result = bad_uuid.delay(name, "not-a-uuid")
    with pytest.raises(TaskValidationError, match="repository_id is not a valid UUID"):
        result.get(timeout=60)
    assert len(runs(rds, name)) == 1
    good = bad_uuid.delay(tag(), "12345678-1234-5678-1234-567812345678")
    assert good.get(timeout=60) == "12345678-1234-5678-1234-567812345678"


def test_progress_is_visible_from_another_thread_while_the_task_runs(app, rds):
    name = tag()
    result = progress.delay(name, 10)
    wait_for(lambda: rds.get(f"fw:{name}:halfway"))
    seen: dict = {}

    def watch() -> None:  # Given another thread with its own view of the result
        reader = app.AsyncResult(result.id)
        wait_for(lambda: reader.state == "PROGRESS" and reader.info.get("step") == 5, 30)
        seen.update(state=reader.state, info=reader.info)

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(40)
    # Then it sees the half-way report (a stage change always lands at once)
    assert seen["state"] == "PROGRESS"
    assert seen["info"] == {"percent": 50.0, "stage": "second half", "step": 5}
    rds.set(f"fw:{name}:gate", 1)
    assert result.get(timeout=60)["steps"] == 10


def test_every_task_log_line_carries_task_id_name_and_tenant(app):
    with json_log_lines() as lines:
        by_kwarg = log_lines.delay(tenant="acme")
        by_kwarg.get(timeout=60)
        bound = log_lines.delay(bind_tenant="globex")
        bound.get(timeout=60)
        structlog.get_logger("plain.structlog").info("outside")
        logging.getLogger("plain.stdlib").warning("outside")
    for result, tenant in ((by_kwarg, "acme"), (bound, "globex")):
        mine = [line for line in lines() if line.get("task_id") == result.id]
        events = {line["event"] for line in mine}
        assert {"from the context", "from a structlog logger", "from a stdlib logger"} <= events
        for line in mine:
            assert line["task_name"] == "fw.log_lines"
            assert line["tenant"] == tenant
        # Celery's own line about the task is among them
        assert any(line["event"].startswith("Task fw.log_lines[") for line in mine)
    # and nothing leaks into lines logged outside a task
    outside = [line for line in lines() if line["event"] == "outside"]
    assert len(outside) == 2
    assert all("task_id" not in line and "tenant" not in line for line in outside)


def test_log_fields_end_with_their_task(app):
    # Given runs with and without a tenant, alternating on the worker's 4 threads
    with json_log_lines() as lines:
        results = [log_lines.delay(tenant="acme") if i % 2 else log_lines.delay()
                   for i in range(12)]
        for result in results:
            result.get(timeout=60)
    # Then a run without a tenant never carries the tenant of a run before it
    for i, result in enumerate(results):
        mine = [line for line in lines() if line.get("task_id") == result.id]
        assert mine and all(line.get("tenant") == ("acme" if i % 2 else None) for line in mine)


def test_db_task_lines_carry_task_and_bound_fields(app):
    with json_log_lines() as lines:
        result = db_log_lines.delay(tenant_id=7, bind_repo="r-1")
        result.get(timeout=60)
    mine = [line for line in lines() if line.get("task_id") == result.id]
    events = {line["event"] for line in mine}
    assert {"db from the context", "db from a structlog logger"} <= events
    assert any(event.startswith("Task fw.db_log_lines[") for event in events)  # Celery's
    for line in mine:  # (the body binds repo before it logs anything)
        assert line["task_name"] == "fw.db_log_lines" and line["tenant"] == 7
        assert line["repo"] == "r-1"


def test_db_task_applied_from_a_running_loop_logs_its_fields(app):
    # the coroutine then runs on the background loop's thread, where Celery's current task
    # is not visible: the fields travel as context variables of its asyncio task
    import asyncio

    async def caller():
        with json_log_lines() as lines:
            result = db_log_lines.on_app(app).apply(kwargs={"tenant_id": 8, "bind_repo": "r-2"})
            assert result.get()["status"] == "success"
        return result.id, lines()

    task_id, logged = asyncio.run(caller())
    plain = [line for line in logged if line["event"] == "db from a structlog logger"]
    assert plain and plain[-1]["task_id"] == task_id and plain[-1]["tenant"] == 8
    assert plain[-1]["repo"] == "r-2"
