"""Reading the code graph: repositories, symbol search, callers, callees, file outlines.

Every function takes the connection of a transaction that :func:`store.scope_tenant` has not
yet scoped; it scopes it itself (row-level security on PostgreSQL) and filters by tenant and
repository in every statement as well.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from offload.apps.codegraph.graph import CALLS, CONTAINS, TYPE_KINDS
from offload.apps.codegraph.model import CodeEdge, CodeNode, CodeRepository
from offload.apps.codegraph.resolve import node_id
from offload.apps.codegraph.store import scope_tenant

SYMBOL_KINDS = ("module", *sorted(TYPE_KINDS), "function", "method")


def _repository(row: Any) -> dict[str, Any]:
    return {
        "repo_id": row.repo_id,
        "root_path": row.root_path,
        "generation": row.generation,
        "indexed_at": row.indexed_at.isoformat() if row.indexed_at else None,
        "last_task_id": row.last_task_id,
        "stats": row.stats or {},
    }


def _node(row: Any) -> dict[str, Any]:
    return {
        "qualified_name": row.qualified_name,
        "name": row.name,
        "kind": row.node_type,
        "path": row.path,
        "start_line": row.start_line,
        "end_line": row.end_line,
        "language": row.language,
    }


_NODE_COLUMNS = (CodeNode.qualified_name, CodeNode.name, CodeNode.node_type, CodeNode.path,
                 CodeNode.start_line, CodeNode.end_line, CodeNode.language)


async def list_repositories(conn: AsyncConnection, tenant: str) -> list[dict[str, Any]]:
    await scope_tenant(conn, tenant)
    rows = await conn.execute(
        select(CodeRepository).where(CodeRepository.tenant_id == tenant)
        .order_by(CodeRepository.repo_id))
    return [_repository(row) for row in rows]


async def get_repository(conn: AsyncConnection, tenant: str, repo: str) -> dict[str, Any] | None:
    await scope_tenant(conn, tenant)
    row = (await conn.execute(select(CodeRepository).where(
        CodeRepository.tenant_id == tenant, CodeRepository.repo_id == repo))).first()
    return _repository(row) if row is not None and row.generation > 0 else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_symbols(conn: AsyncConnection, tenant: str, repo: str, query: str,
                         kinds: list[str] | None = None, limit: int = 50,
                         offset: int = 0) -> list[dict[str, Any]]:
    """Symbols whose name or qualified name contains ``query`` (any case); exact name
    matches first, then shorter qualified names."""
    await scope_tenant(conn, tenant)
    statement = select(*_NODE_COLUMNS).where(
        CodeNode.tenant_id == tenant, CodeNode.repo_id == repo,
        CodeNode.node_type.in_(kinds or SYMBOL_KINDS), CodeNode.path.is_not(None))
    if query:
        pattern = _like(query)
        statement = statement.where(or_(CodeNode.name.ilike(pattern, escape="\\"),
                                        CodeNode.qualified_name.ilike(pattern, escape="\\")))
    exact = (CodeNode.name == query).desc()
    rows = await conn.execute(
        statement.order_by(exact, CodeNode.qualified_name).limit(limit).offset(offset))
    return [_node(row) for row in rows]


async def get_node(conn: AsyncConnection, tenant: str, repo: str,
                   qualified_name: str) -> dict[str, Any] | None:
    await scope_tenant(conn, tenant)
    row = (await conn.execute(select(*_NODE_COLUMNS).where(
        CodeNode.tenant_id == tenant, CodeNode.repo_id == repo,
        CodeNode.qualified_name == qualified_name))).first()
    return _node(row) if row is not None else None


def _edge_info(props: dict[str, Any] | None) -> dict[str, Any]:
    props = props or {}
    return {"count": props.get("count", 1), "lines": props.get("lines", []),
            "resolution": props.get("resolution", "resolved")}


async def callers(conn: AsyncConnection, tenant: str, repo: str, qualified_name: str,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Who calls ``qualified_name``: a node of the repository, or an external or unresolved
    name as stored (``os.path.join``, ``self.items.append``)."""
    await scope_tenant(conn, tenant)
    rows = await conn.execute(
        select(*_NODE_COLUMNS, CodeEdge.properties)
        .join(CodeNode, CodeNode.id == CodeEdge.from_node)
        .where(CodeEdge.tenant_id == tenant, CodeEdge.repo_id == repo,
               CodeEdge.to_name == qualified_name, CodeEdge.edge_type == CALLS,
               CodeNode.tenant_id == tenant)
        .order_by(CodeNode.path, CodeNode.start_line).limit(limit))
    return [{**_node(row), **_edge_info(row.properties)} for row in rows]


async def callees(conn: AsyncConnection, tenant: str, repo: str, qualified_name: str,
                  limit: int = 500) -> list[dict[str, Any]]:
    """What ``qualified_name`` calls, resolved targets with their location."""
    await scope_tenant(conn, tenant)
    target = aliased(CodeNode)
    rows = await conn.execute(
        select(CodeEdge.to_name, CodeEdge.properties, target.node_type, target.path,
               target.start_line, target.end_line)
        .outerjoin(target, and_(target.id == CodeEdge.to_node, target.tenant_id == tenant))
        .where(CodeEdge.from_node == node_id(tenant, repo, qualified_name),
               CodeEdge.tenant_id == tenant, CodeEdge.repo_id == repo,
               CodeEdge.edge_type == CALLS)
        .order_by(CodeEdge.to_name).limit(limit))
    return [{"qualified_name": row.to_name, "kind": row.node_type, "path": row.path,
             "start_line": row.start_line, "end_line": row.end_line,
             **_edge_info(row.properties)} for row in rows]


async def outline(conn: AsyncConnection, tenant: str, repo: str,
                  path: str) -> dict[str, Any] | None:
    """A file's definitions, nested as they are in the source."""
    await scope_tenant(conn, tenant)
    rows = (await conn.execute(
        select(CodeNode.id, *_NODE_COLUMNS, CodeNode.properties)
        .where(CodeNode.tenant_id == tenant, CodeNode.repo_id == repo, CodeNode.path == path)
        .order_by(CodeNode.start_line, CodeNode.end_line.desc()))).all()
    file_row = next((row for row in rows if row.node_type == "file"), None)
    if file_row is None:
        return None
    contains = await conn.execute(
        select(CodeEdge.from_node, CodeEdge.to_node).where(
            CodeEdge.tenant_id == tenant, CodeEdge.repo_id == repo, CodeEdge.path == path,
            CodeEdge.edge_type == CONTAINS))
    entries = {row.id: {**_node(row), "children": []} for row in rows if row is not file_row}
    parent_of = {to: frm for frm, to in contains if to in entries and frm in entries}
    top = []
    for row in rows:
        if row is file_row:
            continue
        entry = entries[row.id]
        parent = parent_of.get(row.id)
        (entries[parent]["children"] if parent is not None else top).append(entry)
    props = file_row.properties or {}
    return {"path": path, "language": file_row.language, "lines": props.get("lines"),
            "symbols": top}
