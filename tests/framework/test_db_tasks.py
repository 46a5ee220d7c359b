"""@db_task on a real worker against SQLite and PostgreSQL: commit on success, rollback on
error, commit per batch, integrity errors fail at once, one loop and engine per thread."""

from __future__ import annotations

import pytest
from celery import group

from offload import TaskValidationError, create_worker_app

from .conftest import in_process_worker, query, runs, tag
from .tasks_app import (
    FAST,
    bad_sql,
    batches,
    count_items,
    duplicate,
    insert_items,
    insert_then_fail,
    where,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request, fw_settings):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    app = create_worker_app(settings=fw_settings(database_url=url))
    with in_process_worker(app, pool="threads", concurrency=3):
        yield app, url


def names(url: str, name: str) -> list[str]:
    return sorted(r[0] for r in query(url, "SELECT name FROM fw_items WHERE tag = :t", t=name))


def test_commit_on_success(db):
    _app, url = db
    name = tag()
    assert insert_items.delay(name, ["a", "b"]).get(timeout=30)["inserted"] == 2
    assert names(url, name) == ["a", "b"]
    assert count_items.delay(name).get(timeout=30) == 2


def test_rollback_on_non_retriable_error(db, rds):
    _app, url = db
    name = tag()
    with pytest.raises(TaskValidationError, match="invalid after writing"):
        insert_then_fail.delay(name, f"{name}-x", "validation").get(timeout=30)
    assert len(runs(rds, name)) == 1
    assert names(url, name) == []


def test_rollback_on_every_retried_attempt(db, rds):
    _app, url = db
    name = tag()
    with pytest.raises(ValueError, match="fails after writing"):
        insert_then_fail.delay(name, f"{name}-x", "value").get(timeout=60)
    assert len(runs(rds, name)) == FAST.max_retries + 1
    assert names(url, name) == []


def test_integrity_error_fails_at_once(db, rds):
    _app, url = db
    name = tag()
    result = duplicate.delay(name, f"{name}-dup")
    with pytest.raises(Exception) as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "TaskIntegrityError"
    assert "database integrity error: UNIQUE constraint failed" in str(raised.value) or (
        "duplicate key value violates unique constraint" in str(raised.value))
    assert result.state == "FAILURE"
    assert len(runs(rds, name)) == 1
    assert names(url, name) == []


def test_database_errors_retry_then_fail_as_a_rebuildable_error(db, rds):
    # Given a statement the database refuses (SQLite: OperationalError; PostgreSQL:
    # ProgrammingError), every attempt rolls back and is retried per policy
    _app, url = db
    name = tag()
    result = bad_sql.delay(name)
    with pytest.raises(Exception) as raised:
        result.get(timeout=30)
    # Then the client reads an offload error (SQLAlchemy's cannot be rebuilt from a result)
    assert type(raised.value).__name__ == "TaskDatabaseError"
    assert "fw_no_such_table" in str(raised.value)
    assert result.state == "FAILURE"
    assert [r[1] for r in runs(rds, name)] == list(range(FAST.max_retries + 1))
    assert names(url, name) == []


def test_batches_commit_one_by_one(db):
    _app, url = db
    name = tag()
    done = batches.delay(name, 10, 3).get(timeout=30)
    assert done["processed"] == 10 and done["batches"] == 4
    assert len(names(url, name)) == 10

    # Given a run that breaks in its third batch, the two committed batches stay
    broken = tag()
    with pytest.raises(ValueError, match="batch 3 breaks"):
        batches.delay(broken, 10, 3, fail_at_batch=3).get(timeout=30)
    assert names(url, broken) == sorted(f"{broken}-{i}" for i in range(6))


def test_one_loop_and_engine_per_worker_thread(db):
    results = group(where.s() for _ in range(24)).apply_async().get(timeout=60)
    by_thread: dict[str, set] = {}
    for r in results:
        by_thread.setdefault(r["thread"], set()).add((r["loop"], r["engine"]))
    assert all(len(v) == 1 for v in by_thread.values()), by_thread
    loops = {r["loop"] for r in results}
    assert len(loops) == len(by_thread)  # no two threads share a loop
