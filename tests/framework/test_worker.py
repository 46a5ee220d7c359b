"""Simple tasks on a real worker (threads pool, Redis broker and results): results, retries
with their real delays, errors that fail at once, progress, log context."""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading

import pytest
import structlog
from celery.exceptions import SoftTimeLimitExceeded  # noqa: F401 - documented below

from offload import TaskNotFoundError, TaskValidationError, create_worker_app
from offload.logs import _shared_processors

from .conftest import in_process_worker, runs, tag, wait_for
from .tasks_app import FAST, add, bad_uuid, flaky, log_lines, not_found, progress


@pytest.fixture(scope="module")
def app(fw_settings, sqlite_url):
    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    with in_process_worker(app, pool="threads", concurrency=4):
        yield app


def test_success_result_and_queue(app):
    result = add.delay(2, 3)
    value = result.get(timeout=10)
    assert value == {"status": "success", "task_id": result.id, "sum": 5}
    # result_extended: the stored meta names the task and its queue
    meta = app.backend.get_task_meta(result.id)
    assert meta["name"] == "fw.add" and meta["queue"] == "high_priority"


def test_retries_follow_the_policy_with_real_delays(app, rds):
    name = tag()
    result = flaky.delay(name, 2)
    assert result.get(timeout=15) == {"status": "success", "task_id": result.id, "retries": 2}
    seen = runs(rds, name)
    assert [r[1] for r in seen] == [0, 1, 2]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    # FAST: 0.3 s then 0.6 s, no jitter (a worker may pick an ETA task up a little late)
    assert FAST.countdown(0) * 0.95 <= gaps[0] < FAST.countdown(0) + 1.0
    assert FAST.countdown(1) * 0.95 <= gaps[1] < FAST.countdown(1) + 1.0


@pytest.mark.parametrize("error", ["ConnectionError", "TimeoutError", "ValueError"])
def test_retriable_errors_fail_after_the_last_retry(app, rds, error):
    name = tag()
    result = flaky.delay(name, 10, error)
    with pytest.raises(Exception) as raised:
        result.get(timeout=15)
    assert type(raised.value).__name__ == error
    assert result.state == "FAILURE"
    assert len(runs(rds, name)) == FAST.max_retries + 1


def test_non_retriable_error_fails_once_with_its_context(app, rds):
    name = tag()
    result = not_found.delay(name, 42)
    with pytest.raises(TaskNotFoundError) as raised:
        result.get(timeout=10)
    assert str(raised.value) == "no such user (user_id=42)"
    assert result.state == "FAILURE"
    assert len(runs(rds, name)) == 1


def test_validation_error_fails_once(app, rds):
    name = tag()
    result = bad_uuid.delay(name, "not-a-uuid")
    with pytest.raises(TaskValidationError, match="repository_id is not a valid UUID"):
        result.get(timeout=10)
    assert len(runs(rds, name)) == 1
    good = bad_uuid.delay(tag(), "12345678-1234-5678-1234-567812345678")
    assert good.get(timeout=10) == "12345678-1234-5678-1234-567812345678"


def test_progress_is_visible_from_another_thread_while_the_task_runs(app, rds):
    name = tag()
    result = progress.delay(name, 10)
    wait_for(lambda: rds.get(f"fw:{name}:halfway"))
    seen: dict = {}

    def watch() -> None:  # Given another thread with its own view of the result
        reader = app.AsyncResult(result.id)
        wait_for(lambda: reader.state == "PROGRESS" and reader.info.get("step") == 5, 5)
        seen.update(state=reader.state, info=reader.info)

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(10)
    # Then it sees the half-way report (a stage change always lands at once)
    assert seen["state"] == "PROGRESS"
    assert seen["info"] == {"percent": 50.0, "stage": "second half", "step": 5}
    rds.set(f"fw:{name}:gate", 1)
    assert result.get(timeout=10)["steps"] == 10


def test_every_task_log_line_carries_task_id_name_and_tenant(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        by_kwarg = log_lines.delay(tenant="acme")
        by_kwarg.get(timeout=10)
        bound = log_lines.delay(bind_tenant="globex")
        bound.get(timeout=10)
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    for result, tenant in ((by_kwarg, "acme"), (bound, "globex")):
        mine = [line for line in lines if line.get("task_id") == result.id]
        events = {line["event"] for line in mine}
        assert {"from the context", "from a structlog logger", "from a stdlib logger"} <= events
        for line in mine:
            assert line["task_name"] == "fw.log_lines"
            assert line["tenant"] == tenant
    # and nothing leaks into lines logged outside a task
    assert all("task_id" not in line for line in lines if line["event"] == "outside")
