"""The stored graph, on SQLite and PostgreSQL: equal to the hand-written fixtures, incremental
(unchanged files skipped, dependants refreshed, deleted files gone — always equal to a fresh
ingest), atomic per repository, and resources released on every path."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from offload.apps.codegraph.ingest import ingest_repository
from offload.apps.codegraph.model import CodeEdge, CodeFile, CodeNode
from offload.apps.codegraph.store import scope_tenant
from offload.db import session_maker

from .conftest import stored_graph
from .graphkit import FIXTURES, expected

LANGUAGES = ["python", "javascript", "typescript", "go", "rust", "java"]


async def ingest(engine: AsyncEngine, settings, tenant: str, repo: str, path: Path, **kw):
    async with session_maker(engine)() as session:
        return await ingest_repository(session, tenant_id=tenant, repo_id=repo, repo_path=path,
                                       settings=settings, **kw)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_stored_graph_equals_the_hand_written_fixture(engine, cg_settings, tenant,
                                                            language):
    result = await ingest(engine, cg_settings, tenant, language, FIXTURES / language)
    assert result["success"] and result["files_failed"] == 0
    assert await stored_graph(engine, tenant, language) == expected(language)
    # every IMPORTS edge ends at a node: a file or package of the repository, or an external
    # module node (never a bare name)
    targets = await import_targets(engine, tenant, language)
    assert targets and all(kind in ("file", "package") or (kind == "module" and external)
                           for _name, kind, external in targets), targets


async def import_targets(engine: AsyncEngine, tenant: str, repo: str) -> list[tuple]:
    """(to_name, type of the node the edge points at, external?) of every IMPORTS edge."""
    target = aliased(CodeNode)
    async with session_maker(engine)() as session:
        conn = await session.connection()
        await scope_tenant(conn, tenant)
        rows = await conn.execute(
            select(CodeEdge.to_name, target.node_type, target.properties)
            .outerjoin(target, target.id == CodeEdge.to_node)
            .where(CodeEdge.tenant_id == tenant, CodeEdge.repo_id == repo,
                   CodeEdge.edge_type == "IMPORTS"))
        return [(name, kind, bool((props or {}).get("external"))) for name, kind, props in rows]


async def test_unchanged_reindex_parses_and_writes_nothing(engine, cg_settings, tenant,
                                                           copy_fixture):
    repo = copy_fixture("python")
    first = await ingest(engine, cg_settings, tenant, "shop", repo)
    assert first["files_parsed"] == 4 and first["nodes_created"] > 0
    again = await ingest(engine, cg_settings, tenant, "shop", repo)
    assert again["changed"] is False
    assert (again["files_parsed"], again["nodes_created"], again["edges_created"]) == (0, 0, 0)
    assert again["files_unchanged"] == 4
    assert await stored_graph(engine, tenant, "shop") == expected("python")


async def test_edit_inside_a_function_rewrites_only_that_file(engine, cg_settings, tenant,
                                                              copy_fixture):
    repo = copy_fixture("python")
    await ingest(engine, cg_settings, tenant, "shop", repo)
    # When a function body changes (and lines move), nothing other files see changes
    service = repo / "shop" / "service.py"
    service.write_text("# moved down\n" + service.read_text().replace(
        "    return fmt(order)", "    return fmt(len(order))"))
    result = await ingest(engine, cg_settings, tenant, "shop", repo)
    # Then only that file is parsed and rewritten
    assert (result["files_parsed"], result["files_rewritten_unchanged"]) == (1, 0)
    assert result["files_unchanged"] == 3
    graph = await stored_graph(engine, tenant, "shop")
    assert "function shop.service.audit 14-17" in graph[0]
    assert "CALLS shop.service.audit -> ext:builtins.len" in graph[1]
    assert graph == await fresh_graph(engine, cg_settings, tenant, repo)


async def test_renamed_definition_updates_callers_in_unchanged_files(engine, cg_settings, tenant,
                                                                     copy_fixture):
    repo = copy_fixture("python")
    await ingest(engine, cg_settings, tenant, "shop", repo)
    # When shop.service.place is renamed, main.py (unchanged) calls a name that is gone
    service = repo / "shop" / "service.py"
    service.write_text(service.read_text().replace("def place(", "def place_order("))
    result = await ingest(engine, cg_settings, tenant, "shop", repo)
    assert result["files_parsed"] == 1
    assert result["files_rewritten_unchanged"] == 1  # main.py, and only main.py
    nodes, edges = await stored_graph(engine, tenant, "shop")
    assert "CALLS main.main -> ?shop.service.place" in edges
    assert "CALLS main.main -> shop.service.place" not in edges
    assert "function shop.service.place_order 6-10" in nodes
    assert (nodes, edges) == await fresh_graph(engine, cg_settings, tenant, repo)


async def test_deleted_file_disappears_with_its_nodes_and_edges(engine, cg_settings, tenant,
                                                                copy_fixture):
    repo = copy_fixture("python")
    await ingest(engine, cg_settings, tenant, "shop", repo)
    (repo / "shop" / "service.py").unlink()
    result = await ingest(engine, cg_settings, tenant, "shop", repo)
    assert (result["files_deleted"], result["files_parsed"]) == (1, 0)
    nodes, edges = await stored_graph(engine, tenant, "shop")
    # main.py still imports shop.service: now a module outside the repository
    assert [n for n in nodes if "shop.service" in n or "shop/service.py" in n] == [
        "module shop.service"]
    assert "IMPORTS main.py -> ext:shop.service" in edges
    assert not [e for e in edges if e.split(" -> ")[0].split(" ", 1)[1].startswith(
        ("shop.service", "shop/service.py"))]
    assert await stored_files(engine, tenant, "shop") == [
        "main.py", "shop/__init__.py", "shop/models.py"]
    assert (nodes, edges) == await fresh_graph(engine, cg_settings, tenant, repo)


async def stored_files(engine: AsyncEngine, tenant: str, repo: str) -> list[str]:
    async with session_maker(engine)() as session:
        conn = await session.connection()
        await scope_tenant(conn, tenant)
        return list((await conn.execute(
            select(CodeFile.path).where(CodeFile.tenant_id == tenant, CodeFile.repo_id == repo)
            .order_by(CodeFile.path))).scalars())


async def test_a_file_that_fails_to_parse_is_counted_and_reported_not_fatal(
        engine, cg_settings, tenant, copy_fixture, monkeypatch):
    from offload.apps.codegraph import parsing

    repo = copy_fixture("python")
    real = parsing.extract

    def extract(source: bytes, language: str):
        if b"class Base" in source:
            raise RuntimeError("the grammar choked")
        return real(source, language)

    # Given one file whose extraction raises (parsed in this process: the pool would not see
    # the patch)
    monkeypatch.setattr(parsing, "extract", extract)
    settings = cg_settings.model_copy(update={"codegraph_pool_min_bytes": 10**12})
    result = await ingest(engine, settings, tenant, "shop", repo)
    # Then the run succeeds with the other files, and says which file failed and why
    assert result["success"] and (result["files_parsed"], result["files_failed"]) == (3, 1)
    assert result["failures"] == [{"path": "shop/models.py",
                                   "reason": "error: RuntimeError: the grammar choked"}]
    assert await stored_files(engine, tenant, "shop") == [
        "main.py", "shop/__init__.py", "shop/service.py"]
    # And once the file parses, the next run picks it up (a failed file is not "unchanged")
    monkeypatch.setattr(parsing, "extract", real)
    again = await ingest(engine, settings, tenant, "shop", repo)
    assert (again["files_parsed"], again["files_failed"]) == (1, 0)
    assert await stored_graph(engine, tenant, "shop") == expected("python")


async def test_new_file_and_changed_manifest_refresh_names(engine, cg_settings, tenant,
                                                           copy_fixture):
    repo = copy_fixture("go")
    await ingest(engine, cg_settings, tenant, "demo", repo)
    # When go.mod names another module, every qualified name changes without any .go change
    (repo / "go.mod").write_text("module example.org/renamed\n\ngo 1.21\n")
    result = await ingest(engine, cg_settings, tenant, "demo", repo)
    assert result["changed"] and result["files_parsed"] == 0
    nodes, _edges = await stored_graph(engine, tenant, "demo")
    assert "function example.org/renamed.main 9-13" in nodes
    assert await stored_graph(engine, tenant, "demo") == await fresh_graph(
        engine, cg_settings, tenant, repo)


async def fresh_graph(engine, settings, tenant, repo: Path):
    await ingest(engine, settings, tenant, "fresh", repo)
    return await stored_graph(engine, tenant, "fresh")


# --- atomicity ---------------------------------------------------------------------------


def synthetic_repo(root: Path, files: int, marker: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"mod{i:03d}.py").write_text(
            f"import mod{(i + 1) % files:03d}\n\n\n"
            f"def f{i}(x):\n    return mod{(i + 1) % files:03d}.f{(i + 1) % files}(x)\n\n\n"
            f"class C{i}:\n    def m(self):\n        return f{i}(1){marker}\n")
    return root


def snapshot(database_url: str, tenant: str, repo: str) -> tuple[list, list]:
    """The repository's nodes and edges as a separate, plain connection reads them right now:
    what any other reader sees."""
    nodes = ("SELECT qualified_name, node_type, start_line, end_line FROM code_nodes "
             "WHERE tenant_id = {p} AND repo_id = {p} ORDER BY 1")
    edges = ("SELECT n.qualified_name, e.edge_type, e.to_name FROM code_edges e "
             "JOIN code_nodes n ON n.id = e.from_node "
             "WHERE e.tenant_id = {p} AND e.repo_id = {p} ORDER BY 1, 2, 3")
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as conn:
            return tuple(conn.execute(q.format(p="?"), (tenant, repo)).fetchall()
                         for q in (nodes, edges))
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://")) as conn:
        return tuple([tuple(row) for row in conn.execute(q.format(p="%s"), (tenant, repo))]
                     for q in (nodes, edges))


class Boom(Exception):
    pass


async def test_readers_see_the_old_graph_until_commit_and_after_a_failure(
        engine, cg_settings, database_url, workdir, tenant):
    settings = cg_settings.model_copy(update={"codegraph_batch_rows": 20})
    repo = synthetic_repo(workdir / "big", 60)
    await ingest(engine, settings, tenant, "big", repo)
    old = snapshot(database_url, tenant, "big")
    before = await stored_graph(engine, tenant, "big")
    # Given every file changes (one more function each), so every row is rewritten
    for path in repo.glob("*.py"):
        path.write_text(path.read_text() + "\n\ndef extra():\n    pass\n")
    seen: list[tuple] = []

    def progress(percent, stage, **info):
        if stage == "storing" and info.get("files_done", 0) >= 25:
            # When the re-index is half-way through writing, a reader looks
            seen.append(snapshot(database_url, tenant, "big"))
            if info["files_done"] >= 50:
                raise Boom("the worker dies half-way")

    with pytest.raises(Boom):
        await ingest(engine, settings, tenant, "big", repo, progress=progress)
    # Then the reader saw exactly the old graph, every node and edge, and after the failure
    # the old graph is intact
    assert len(seen) >= 2 and all(view == old for view in seen)
    assert snapshot(database_url, tenant, "big") == old
    assert await stored_graph(engine, tenant, "big") == before
    assert engine.pool.checkedout() == 0
    # And a clean re-index then writes the new graph
    result = await ingest(engine, settings, tenant, "big", repo)
    assert result["files_parsed"] == 60
    new_nodes, _new_edges = snapshot(database_url, tenant, "big")
    assert len(new_nodes) == len(old[0]) + 60


# --- resources -----------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("fail_at", [None, "parsing", "storing"])
async def test_pool_connections_and_files_are_released(engine, cg_settings, workdir, tenant,
                                                       fail_at):
    settings = cg_settings.model_copy(update={"codegraph_pool_min_bytes": 0})
    repo = synthetic_repo(workdir / f"r{fail_at}", 80)  # parsed in the process pool
    await ingest(engine, settings, tenant, "warm", synthetic_repo(workdir / "warm", 2))
    fds = open_fds()

    def progress(percent, stage, **info):
        if stage == fail_at and info.get("files_done", 0) >= 2:
            raise Boom(stage)

    if fail_at is None:
        result = await ingest(engine, settings, tenant, "r", repo, progress=progress)
        assert result["files_parsed"] == 80
    else:
        with pytest.raises(Boom):
            await ingest(engine, settings, tenant, "r", repo, progress=progress)
    assert engine.pool.checkedout() == 0
    assert multiprocessing.active_children() == []
    assert open_fds() <= fds + 1  # the forkserver's socket may stay open, nothing else


# --- parse modes and the row pipeline ---------------------------------------------------------

CHILD = """
import asyncio, json, sys
from offload.apps.codegraph.ingest import ingest_repository
from offload.db import create_engine, session_maker
from offload.settings import load_settings

async def main(url, tenant, path):
    settings = load_settings(database_url=url, codegraph_roots=[path], codegraph_pool_min_bytes=0,
                             codegraph_parse_workers=2, data_dir=path + "/.data")
    engine = create_engine(url)
    async with session_maker(engine)() as session:
        result = await ingest_repository(session, tenant_id=tenant, repo_id="child",
                                         repo_path=path, settings=settings)
    await engine.dispose()
    print(json.dumps(result))

if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
"""


async def test_every_parse_mode_yields_the_same_graph(engine, cg_settings, database_url,
                                                      workdir, tenant):
    import json
    import subprocess
    import sys

    repo = synthetic_repo(workdir / "modes", 60)
    modes = {}
    for repo_id, min_bytes in (("threaded", 10**12), ("pooled", 0)):
        settings = cg_settings.model_copy(update={"codegraph_pool_min_bytes": min_bytes})
        result = await ingest(engine, settings, tenant, repo_id, repo)
        modes[repo_id] = result["parse_mode"]
    assert modes["threaded"] == "thread" and modes["pooled"] in ("fork", "forkserver")
    graphs = [await stored_graph(engine, tenant, r) for r in ("threaded", "pooled")]
    if not database_url.startswith("sqlite"):
        # a fresh single-threaded process forks its pool
        script = workdir / "child.py"
        script.write_text(CHILD)
        out = await asyncio.to_thread(
            lambda: subprocess.run([sys.executable, str(script), database_url, tenant, str(repo)],
                                   capture_output=True, text=True, timeout=120, check=True).stdout)
        assert json.loads(out.strip().splitlines()[-1])["parse_mode"] == "fork"
        graphs.append(await stored_graph(engine, tenant, "child"))
    assert all(graph == graphs[0] for graph in graphs) and graphs[0][0]


async def test_row_pipeline_reports_producer_errors_and_stops():
    import contextlib

    from offload.apps.codegraph.ingest import _pipeline

    def produce(emit):
        emit(("nodes", [1]))
        emit(("nodes", [2]))
        raise ValueError("bad row")

    got = []
    with pytest.raises(ValueError, match="bad row"):
        async with contextlib.aclosing(_pipeline(produce)) as items:
            async for item in items:
                got.append(item)
    assert got == [("nodes", [1]), ("nodes", [2])]

    def endless(emit):
        while True:
            emit(("edges", [0]))

    async with contextlib.aclosing(_pipeline(endless)) as items:
        async for _item in items:
            break  # the consumer stops: the producer is stopped and joined
