"""The pytest plugin's fixtures, used the way a project using offload would: an in-process
worker on embedded defaults (in-process broker, embedded SurrealDB results, SQLite)."""

from __future__ import annotations

import pytest

from offload.testing import TaskTestContext

from .conftest import create_tables, query
from .tasks_app import add, batches, insert_items


@pytest.fixture
def offload_settings_overrides():
    return {"task_packages": [], "task_modules": ["framework.tasks_app"]}


def test_settings_are_embedded_and_isolated(offload_settings, tmp_path):
    assert offload_settings.broker == "memory://"
    assert offload_settings.results_embedded
    assert offload_settings.database.startswith("sqlite+aiosqlite:///" + str(tmp_path))
    assert offload_settings.pool == "threads"


def test_in_process_worker_runs_simple_and_db_tasks(offload_settings, offload_worker):
    create_tables(offload_settings.database)
    result = add.delay(20, 22)
    assert result.get(timeout=60)["sum"] == 42
    assert insert_items.delay("plug", ["a", "b", "c"]).get(timeout=60)["inserted"] == 3
    done = batches.delay("plug-b", 4, 3).get(timeout=60)
    assert done == {"status": "success", "task_id": done["task_id"], "processed": 4,
                    "batches": 2}
    assert query(offload_settings.database,
                 "SELECT count(*) FROM fw_items WHERE tag IN ('plug', 'plug-b')") == [(7,)]
    # the final PROGRESS was replaced by the result
    assert offload_worker.app.AsyncResult(done["task_id"]).state == "SUCCESS"


def test_task_context_factory(offload_task_context, offload_settings):
    ctx = offload_task_context(task_id="abc")
    assert isinstance(ctx, TaskTestContext)
    assert ctx.settings is offload_settings
    assert add.run_with(ctx, 1, 2) == {"status": "success", "task_id": "abc", "sum": 3}
    ctx.assert_logged("info", "adding")
