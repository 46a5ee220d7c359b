"""Fixtures of the codegraph tests: a migrated database per dialect, settings that allow the
test's directories, and helpers to read a stored graph back."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from offload.apps.codegraph.model import CodeEdge, CodeNode
from offload.apps.codegraph.schema import upgrade, upgrade_url
from offload.apps.codegraph.store import scope_tenant
from offload.db import create_engine, session_maker

from .graphkit import FIXTURES, render_edge, render_node


@pytest.fixture(scope="session")
def codegraph_pg_url(postgres_url: str) -> str:
    """The session's PostgreSQL database with the codegraph schema (migrated once)."""
    asyncio.run(upgrade_url(postgres_url))
    return postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/codegraph.db"
    return request.getfixturevalue("codegraph_pg_url")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def tenant() -> str:
    """A tenant id of this test only (tests share the session's PostgreSQL database)."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "repos"
    path.mkdir()
    return path


@pytest.fixture
def cg_settings(make_settings, workdir: Path, database_url: str):
    return make_settings(database_url=database_url, codegraph_roots=[workdir, FIXTURES],
                         codegraph_parse_workers=2)


@pytest.fixture
def copy_fixture(workdir: Path) -> Iterator:
    def copy(name: str, target: str | None = None) -> Path:
        destination = workdir / (target or name)
        shutil.copytree(FIXTURES / name, destination)
        return destination

    yield copy


async def stored_graph(engine: AsyncEngine, tenant: str, repo: str) -> tuple[set[str], set[str]]:
    """The stored graph of a repository, rendered like a fixture's EXPECTED lines."""
    async with session_maker(engine)() as session:
        conn = await session.connection()
        await scope_tenant(conn, tenant)
        nodes = (await conn.execute(
            select(CodeNode.id, CodeNode.qualified_name, CodeNode.node_type, CodeNode.start_line,
                   CodeNode.end_line).where(CodeNode.tenant_id == tenant,
                                            CodeNode.repo_id == repo))).all()
        qn = {row.id: row.qualified_name for row in nodes}
        edges = (await conn.execute(
            select(CodeEdge.from_node, CodeEdge.to_node, CodeEdge.edge_type, CodeEdge.to_name,
                   CodeEdge.properties).where(CodeEdge.tenant_id == tenant,
                                              CodeEdge.repo_id == repo))).all()
    node_lines = {render_node(r.qualified_name, r.node_type, r.start_line, r.end_line)
                  for r in nodes}
    dangling = [e for e in edges if e.from_node not in qn or (e.to_node and e.to_node not in qn)]
    assert not dangling, f"edges pointing at missing nodes: {dangling[:5]}"
    edge_lines = {render_edge(e.edge_type, qn[e.from_node], qn.get(e.to_node) if e.to_node
                              else None, e.to_name, e.properties) for e in edges}
    return node_lines, edge_lines


KEYS = {"key-acme": "acme", "key-globex": "globex"}
ACME = {"Authorization": "Bearer key-acme"}
GLOBEX = {"Authorization": "Bearer key-globex"}


@contextlib.contextmanager
def embedded_stack(data: Path, name: str, *, migrate: bool = True,
                   **overrides) -> Iterator[tuple]:
    """The offload service's parts on the embedded defaults (memory broker, embedded SurrealDB
    results, SQLite, migrated), codegraph mounted, API keys ``KEYS``: (settings, Celery app,
    API app), with a threads worker consuming in this process until the block ends."""
    from offload.factory import create_worker_app
    from offload.server.app import create_api
    from offload.server.dev import InProcessWorker
    from offload.settings import load_settings

    settings = load_settings(**{
        "data_dir": data, "broker_url": "memory://", "worker_pool": "threads",
        "result_backend": f"surrealdb+surrealkv://{data}/results",
        "database_url": f"sqlite+aiosqlite:///{data}/offload.db",
        "task_packages": ["offload.apps.codegraph"], "codegraph_roots": [str(FIXTURES)],
        "api_keys": KEYS, "progress_min_interval": 0, **overrides})
    if migrate:
        asyncio.run(upgrade_url(settings.database))
    celery = create_worker_app(settings=settings, name=name)
    # a threads worker finds its tasks through the default app: this one while its worker
    # runs (what celery's start_worker does too; one such worker at a time)
    celery.set_default()
    worker = InProcessWorker(celery, concurrency=2)
    try:
        worker.start()
        yield settings, celery, create_api(settings, celery)
    finally:
        worker.stop(30)
        celery.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The offload HTTP service with codegraph mounted (a TestClient) and a worker in this
    process; acme has ingested the python fixture as repository ``shop``."""
    from fastapi.testclient import TestClient

    data = tmp_path_factory.mktemp("codegraph-api")
    with embedded_stack(data, "codegraph-api-test") as (_settings, _celery, api), \
            TestClient(api) as client:
        response = client.post("/repositories/parse", headers=ACME, json={
            "repo_path": str(FIXTURES / "python"), "repo_id": "shop"})
        assert response.status_code == 202, response.text
        assert wait_for_task(client, response.json()["task_id"], ACME)["state"] == "SUCCESS"
        yield client


def wait_for_task(client, task_id: str, headers: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/tasks/{task_id}", headers=headers).json()
        if status["state"] in ("SUCCESS", "FAILURE"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
