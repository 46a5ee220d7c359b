"""TaskContext and the test kit, without a worker: results, validation, batches, stats,
progress throttling, and calling task functions directly with a real SQLite session."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from offload import (
    NonRetriableTaskError,
    TaskConfigurationError,
    TaskContext,
    TaskNotFoundError,
    TaskValidationError,
)
from offload.tasks.progress import ProgressReporter
from offload.testing import TaskTestContext, sqlite_sessions

from .conftest import wait_for
from .tasks_app import batches, insert_items, items, metadata


def test_success_result_and_reserved_fields():
    ctx = TaskTestContext(task_id="t-1")
    assert ctx.success_result(count=2) == {"status": "success", "task_id": "t-1", "count": 2}
    for reserved in ("status", "task_id"):
        with pytest.raises(NonRetriableTaskError, match=f"{reserved} is reserved"):
            ctx.success_result(**{reserved: "x"})


def test_validate_uuid_and_error_factories():
    ctx = TaskTestContext()
    value = uuid.uuid4()
    assert ctx.validate_uuid(value) is value
    assert ctx.validate_uuid(str(value), "repo") == value
    assert ctx.validate_uuid(str(value).encode()) == value
    for bad in ("nope", 42, None, "x" * 200):
        with pytest.raises(TaskValidationError, match="repo is not a valid UUID") as raised:
            ctx.validate_uuid(bad, "repo")
        assert raised.value.context == {"field": "repo"}
        assert len(str(raised.value)) < 120
    error = ctx.not_found_error("no such user", user_id=42)
    assert isinstance(error, TaskNotFoundError) and error.context == {"user_id": 42}
    assert isinstance(ctx.validation_error("bad"), TaskValidationError)
    assert isinstance(ctx.config_error("no key"), TaskConfigurationError)


def test_session_outside_db_task_is_a_clear_error():
    ctx = TaskContext(task_name="x.simple")
    with pytest.raises(TaskConfigurationError, match="only available in a @db_task"):
        _ = ctx.session


async def test_iter_batches_sync_async_and_async_iterables():
    ctx = TaskTestContext()
    assert list(ctx.iter_batches(range(7), batch_size=3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b async for b in ctx.iter_batches(range(4), 2)] == [[0, 1], [2, 3]]

    async def numbers():
        for i in range(5):
            yield i

    assert [b async for b in ctx.iter_batches(numbers(), 2)] == [[0, 1], [2, 3], [4]]
    assert list(ctx.iter_batches([], 5)) == []
    with pytest.raises(NonRetriableTaskError, match="batch_size"):
        ctx.iter_batches([1], 0)


def test_stats_counter():
    stats = TaskTestContext().create_stats_counter()
    stats.increment("files")
    stats.increment("files", 4)
    stats.increment("bytes", 2.5)
    assert stats["files"] == 5 and stats.get("missing") == 0
    assert stats.to_dict() == {"files": 5, "bytes": 2.5}


def test_test_context_records_logs_and_progress():
    ctx = TaskTestContext()
    ctx.bind_log_context(tenant="acme")
    ctx.log_info("started", files=3)
    ctx.report_progress(150, "parsing", files=3)
    ctx.report_progress(-1, "parsing")
    ctx.log_success("indexed")
    assert ctx.progress == [{"percent": 100.0, "stage": "parsing", "files": 3},
                            {"percent": 0.0, "stage": "parsing"}]
    assert ctx.assert_logged("info", "started").fields == {"tenant": "acme", "files": 3}
    ctx.assert_logged_success("indexed")
    with pytest.raises(AssertionError, match="no error line containing 'boom'"):
        ctx.assert_logged("error", "boom")
    with pytest.raises(TypeError):
        ctx.report_progress("half", "parsing")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ctx.report_progress(float("nan"), "parsing")


async def test_db_task_function_with_a_real_sqlite_session():
    async with sqlite_sessions(metadata) as sessions:
        async with sessions() as session:
            ctx = TaskTestContext(session=session)
            result = await insert_items.run_with(ctx, "kit", ["a", "b"])
            assert result == {"status": "success", "task_id": ctx.task_id, "inserted": 2}
            await session.commit()
        async with sessions() as session:
            ctx = TaskTestContext(session=session)
            done = await batches.run_with(ctx, "kit-b", 5, 2)
            assert done["processed"] == 5 and ctx.commits == 3
            assert [p["percent"] for p in ctx.progress] == [40.0, 80.0, 100.0]
        async with sessions() as session:
            total = await session.scalar(select(func.count()).select_from(items))
            assert total == 7


class RecordingStore:
    """Stands in for a result backend: the reporter's throttling is under test, not Redis."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, dict]] = []

    def store_result(self, task_id, meta, state, request=None):
        assert state == "PROGRESS"
        self.writes.append((time.monotonic(), meta))


def test_progress_is_throttled_but_stage_changes_and_the_last_call_land():
    store = RecordingStore()
    reporter = ProgressReporter(store, "t-1", None, min_interval=0.2)
    ctx = TaskContext(task_id="t-1", task_name="x", reporter=reporter)
    started = time.monotonic()
    for i in range(1000):  # a tight loop
        ctx.report_progress(i / 10, "scan", i=i)
    # the first lands at once, then at most one per interval (a slow machine may get past one)
    assert store.writes[0][1] == {"percent": 0.0, "stage": "scan", "i": 0}
    assert len(store.writes) <= 1 + (time.monotonic() - started) / 0.2
    before_stage = time.monotonic()
    ctx.report_progress(100, "write")  # a new stage lands at once
    assert store.writes[-1][1] == {"percent": 100.0, "stage": "write"}
    ctx.report_progress(100, "write", rows=5)  # throttled...
    assert store.writes[-1][1] == {"percent": 100.0, "stage": "write"}
    # ...but lands once the interval has passed, without another call
    wait_for(lambda: store.writes[-1][1].get("rows") == 5, timeout=10)
    assert store.writes[-1][0] - before_stage >= 0.2
    ctx.report_progress(100, "write", rows=6)
    ctx._finish()  # the end of the task body flushes, then nothing more is written
    assert store.writes[-1][1]["rows"] == 6
    count = len(store.writes)
    ctx.report_progress(100, "write", rows=7)
    time.sleep(0.3)
    assert len(store.writes) == count


def test_progress_store_failure_never_fails_the_task():
    class Broken:
        def store_result(self, *args, **kwargs):
            raise ConnectionError("result store down")

    reporter = ProgressReporter(Broken(), "t-2", None, min_interval=0)
    ctx = TaskContext(task_id="t-2", reporter=reporter)
    ctx.report_progress(10, "scan")
    assert reporter.stored == 0
