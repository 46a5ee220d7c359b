"""The Celery task ``codegraph.parse_and_index_repository``: its declared options, progress,
result and failure modes — called directly with a TaskTestContext and run on a real worker
(in-process on the embedded defaults)."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from offload.apps.codegraph import tasks
from offload.apps.codegraph.errors import RepositoryParseError, TenantValidationError
from offload.apps.codegraph.schema import upgrade
from offload.db import create_engine, session_maker
from offload.errors import NonRetriableTaskError, TaskConfigurationError
from offload.testing import TaskTestContext

from .conftest import embedded_stack, stored_graph
from .graphkit import FIXTURES, expected
from .test_store import synthetic_repo

TASK = tasks.parse_and_index_repository
RESULT_KEYS = {"success", "nodes_created", "edges_created", "files_parsed", "files_skipped",
               "files_unchanged", "duration_s"}


def test_declared_options() -> None:
    assert TASK.name == "codegraph.parse_and_index_repository"
    assert (TASK.time_limit, TASK.soft_time_limit) == (3600, 3300)
    policy = TASK.retry_policy
    assert policy.max_retries == 3
    # 60 -> 120 -> 240 s, with jitter, capped at 600 s (never Celery's ~1 s backoff)
    for retry, delay in enumerate([60, 120, 240, 480, 600, 600]):
        low, high = policy.bounds(retry)
        assert low <= delay <= high <= 600
        assert low >= delay * 0.85 and policy.jitter > 0
    assert issubclass(TenantValidationError, NonRetriableTaskError)
    assert issubclass(RepositoryParseError, NonRetriableTaskError)


@pytest.fixture
async def sqlite_db(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path}/task.db"
    engine = create_engine(url)
    await upgrade(engine)
    try:
        yield url, engine
    finally:
        await engine.dispose()


async def test_progress_stages_and_result(sqlite_db, make_settings, tmp_path):
    url, engine = sqlite_db
    repo = synthetic_repo(tmp_path / "repo", 30)
    settings = make_settings(database_url=url, codegraph_roots=[tmp_path])
    async with session_maker(engine)() as session:
        ctx = TaskTestContext(session=session, settings=settings, task_name=TASK.name)
        result = await TASK.run_with(ctx, "acme", "repo", str(repo))
        await session.commit()
    assert RESULT_KEYS <= set(result) and result["success"] is True
    assert result["status"] == "success" and result["task_id"] == ctx.task_id
    assert (result["files_parsed"], result["files_unchanged"]) == (30, 0)
    stages = [(p["stage"], p["percent"]) for p in ctx.progress]
    firsts = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1][0] != s[0]]
    assert firsts == [("connecting", 10), ("scanning", 20), ("parsing", 30), ("storing", 80),
                      ("done", 100)]
    percents = [p for _s, p in stages]
    assert percents == sorted(percents)
    parsing = [p for p in ctx.progress if p["stage"] == "parsing"]
    assert parsing[-1]["files_done"] == parsing[-1]["files_total"] == 30
    assert parsing[-1]["percent"] == 80 and parsing[-1]["current_file"].endswith(".py")
    assert [p for p in ctx.progress if p["stage"] == "storing"][-1]["percent"] == 95


async def test_soft_time_limit_rolls_back_and_releases_everything(sqlite_db, make_settings,
                                                                  tmp_path):
    url, engine = sqlite_db
    repo = synthetic_repo(tmp_path / "repo", 40)
    settings = make_settings(database_url=url, codegraph_roots=[tmp_path],
                             codegraph_batch_rows=10, codegraph_pool_min_bytes=0)

    class OutOfTime(TaskTestContext):
        def report_progress(self, percent, stage, **info):
            super().report_progress(percent, stage, **info)
            if stage == "storing" and info.get("files_done", 0) >= 25:
                raise SoftTimeLimitExceeded()

    async with session_maker(engine)() as session:
        with pytest.raises(SoftTimeLimitExceeded):
            await TASK.run_with(OutOfTime(session=session, settings=settings), "acme", "r",
                                str(repo))
    assert engine.pool.checkedout() == 0
    assert await stored_graph(engine, "acme", "r") == (set(), set())


async def test_missing_schema_is_a_configuration_error(tmp_path, make_settings):
    url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    engine = create_engine(url)
    settings = make_settings(database_url=url, codegraph_roots=[FIXTURES])
    try:
        async with session_maker(engine)() as session:
            with pytest.raises(TaskConfigurationError, match="offload migrate"):
                await TASK.run_with(TaskTestContext(session=session, settings=settings),
                                    "acme", "r", str(FIXTURES / "go"))
    finally:
        await engine.dispose()


# --- on a real worker ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A worker in this process on the embedded defaults (memory broker, embedded SurrealDB
    results, SQLite); from 20 kB of source to parse it parses in a process pool."""
    data = tmp_path_factory.mktemp("codegraph-worker")
    repos = data / "repos"
    repos.mkdir()
    with embedded_stack(data, "codegraph-test", codegraph_roots=[str(FIXTURES), str(repos)],
                        codegraph_pool_min_bytes=20_000,
                        codegraph_parse_workers=2) as (settings, app, _api):
        yield app, settings, repos


def test_worker_indexes_a_repository(embedded):
    app, settings, _repos = embedded
    task = TASK.on_app(app)
    assert task.acks_late and task.reject_on_worker_lost  # a lost worker's task runs again
    result = task.apply_async(
        kwargs={"tenant_id": "acme", "repo_id": "shop", "repo_path": str(FIXTURES / "python")})
    value = result.get(timeout=60)
    assert result.state == "SUCCESS" and value["success"] is True
    assert value["files_parsed"] == 4 and value["nodes_created"] == len(expected("python")[0])
    assert value["parse_mode"] == "thread"  # too little to parse for a pool

    async def graph():
        engine = create_engine(settings.database)
        try:
            return await stored_graph(engine, "acme", "shop")
        finally:
            await engine.dispose()

    assert asyncio.run(graph()) == expected("python")


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"tenant_id": "no spaces please"}, "TenantValidationError", "invalid tenant id"),
    ({"repo_id": "../etc"}, "TaskValidationError", "invalid repository id"),
    ({"repo_path": "/etc"}, "RepositoryParseError", "OFFLOAD_CODEGRAPH_ROOTS"),
    ({"repo_path": str(FIXTURES / "nope")}, "RepositoryParseError", "not a directory"),
])
def test_bad_input_fails_at_once_with_an_actionable_message(embedded, kwargs, error, words):
    app, _settings, _repos = embedded
    arguments = {"tenant_id": "acme", "repo_id": "r", "repo_path": str(FIXTURES / "go"),
                 **kwargs}
    result = TASK.on_app(app).apply_async(kwargs=arguments)
    with pytest.raises(Exception) as raised:
        result.get(timeout=60)
    assert result.state == "FAILURE"
    assert type(raised.value).__name__ == error and words in str(raised.value)
    assert (result.retries or 0) == 0


def test_threads_worker_parses_in_a_fork_server_pool(embedded):
    app, _settings, repos = embedded
    repo = synthetic_repo(repos / "pooled", 200)
    value = TASK.on_app(app).apply_async(
        kwargs={"tenant_id": "acme", "repo_id": "pooled", "repo_path": str(repo)}
    ).get(timeout=120)
    # a worker running threads never forks: its pool comes from the fork server
    assert value["parse_mode"] == "forkserver" and value["files_parsed"] == 200
    assert multiprocessing.active_children() == []  # and the pool is gone with the task
