"""HTTP API of codegraph, mounted by the offload service (``router``).

Every route needs ``Authorization: Bearer <key>``; the key names the tenant, never the body.
Another tenant's repository (or task) answers 404 exactly like one that never existed.
Errors: input that breaks the declared schema answers 422 in FastAPI's shape
(``{"detail": [{"loc", "msg", ...}]}``, the message naming the field and the rule); the
routes' own checks answer ``{"detail": {"error", "message"}}`` (422 for a path outside the
allowed roots, 404, 503 when a store is unreachable). No input makes the API answer 500
(tests/codegraph/test_api_fuzz.py).

Routes::

    POST /repositories/parse                                      202 {"task_id", "status": "queued", ...}
    GET  /repositories                                            the tenant's repositories
    GET  /repositories/{repo_id}                                  one repository, its last run's stats
    GET  /repositories/{repo_id}/symbols?q=&kind=&limit=&offset=  symbol search
    GET  /repositories/{repo_id}/symbols/{qualified_name}/callers who calls it
    GET  /repositories/{repo_id}/symbols/{qualified_name}/callees what it calls
    GET  /repositories/{repo_id}/files/{path}/outline             a file's definitions, nested

Progress and result of a parse: the service's ``GET /tasks/{task_id}`` and
``GET /tasks/{task_id}/events`` (server-sent events). A qualified name or path containing
``#``, ``?`` or ``%`` must be percent-encoded in the URL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from offload.apps.codegraph import queries
from offload.apps.codegraph.ingest import REPO_ID, default_repo_id
from offload.integrations.fastapi import (
    current_tenant,
    get_celery_app,
    get_session,
    get_settings,
    tenant_task_id,
)
from offload.settings import Settings

router = APIRouter(prefix="/repositories", tags=["codegraph"])

NO_NUL = r"^[^\x00]*$"
Tenant = Annotated[str, Depends(current_tenant)]
Session = Annotated[AsyncSession, Depends(get_session)]
RepoId = Annotated[str, Path(pattern=REPO_ID.pattern.join("^$"), max_length=128,
                             description="Repository id (letters, digits, _.-).")]
QualifiedName = Annotated[str, Path(min_length=1, max_length=2000, pattern=NO_NUL,
                                    description="Qualified name, e.g. pkg.mod.Class.method.")]
FilePath = Annotated[str, Path(min_length=1, max_length=4096, pattern=NO_NUL,
                               description="Path of the file inside the repository.")]
SymbolKind = Literal["module", "class", "struct", "interface", "trait", "enum", "type",
                     "function", "method"]


class ParseRequest(BaseModel):
    """What to ingest. The tenant comes from the API key, so a body naming one is refused."""

    model_config = ConfigDict(extra="forbid")
    repo_path: str = Field(min_length=1, max_length=4096, pattern=NO_NUL,
                           description="Absolute path, under one of OFFLOAD_CODEGRAPH_ROOTS.")
    repo_id: str | None = Field(None, pattern=REPO_ID.pattern.join("^$"), max_length=128,
                                description="Default: the directory's name.")

    @model_validator(mode="before")
    @classmethod
    def _no_tenant(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("tenant_id" in data or "tenant" in data):
            raise ValueError("the tenant comes from the API key: remove tenant_id from the body")
        return data

    @field_validator("repo_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError("repo_path must be an absolute path")
        return value


class ParseAccepted(BaseModel):
    task_id: str
    status: Literal["queued"]
    repo_id: str
    status_url: str
    events_url: str


class Repository(BaseModel):
    repo_id: str
    root_path: str
    generation: int
    indexed_at: str | None
    last_task_id: str | None
    stats: dict[str, Any]


class Symbol(BaseModel):
    qualified_name: str
    name: str
    kind: str
    path: str | None
    start_line: int | None
    end_line: int | None
    language: str | None


class SymbolPage(BaseModel):
    repo_id: str
    query: str
    symbols: list[Symbol]
    next_offset: int | None


class Call(BaseModel):
    qualified_name: str
    name: str | None = None
    kind: str | None
    path: str | None
    start_line: int | None
    end_line: int | None
    language: str | None = None
    count: int
    lines: list[int]
    resolution: Literal["resolved", "external", "unresolved"]


class Callers(BaseModel):
    repo_id: str
    qualified_name: str
    symbol: Symbol | None = Field(description="None for a name outside the repository.")
    callers: list[Call]


class Callees(BaseModel):
    repo_id: str
    qualified_name: str
    symbol: Symbol
    callees: list[Call]


class OutlineEntry(Symbol):
    children: list[OutlineEntry]


class Outline(BaseModel):
    repo_id: str
    path: str
    language: str | None
    lines: int | None
    symbols: list[OutlineEntry]


def _error(status: int, error: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"error": error, "message": message})


@asynccontextmanager
async def _database(session: AsyncSession) -> AsyncIterator[AsyncConnection]:
    """The request's connection; a store that fails answers 503, never 500."""
    try:
        yield await session.connection()
    except HTTPException:
        raise
    except (DBAPIError, OSError) as exc:
        raise _error(503, "database_unavailable",
                     f"the code graph database failed: {type(exc).__name__}") from exc
    finally:
        await session.rollback()


async def _repository_or_404(conn: AsyncConnection, tenant: str, repo_id: str) -> dict:
    found = await queries.get_repository(conn, tenant, repo_id)
    if found is None:
        raise _error(404, "repository_not_found", f"no repository {repo_id!r}")
    return found


def _within_roots(path: str, settings: Settings) -> bool:
    target = os.path.normpath(path)
    for root in settings.codegraph_roots:
        for base in {os.path.normpath(os.path.abspath(root)), os.path.realpath(root)}:
            if target == base or target.startswith(base.rstrip(os.sep) + os.sep):
                return True
    return False


@router.post("/parse", status_code=202, response_model=ParseAccepted,
             responses={400: {"description": "Body cannot be read (not UTF-8 text)"},
                        422: {"description": "Invalid body: not JSON, a relative path, a path "
                                             "outside the allowed roots, an invalid id, a "
                                             "tenant or other unknown field"},
                        503: {"description": "Broker unreachable"}})
def parse_repository(
    body: ParseRequest,
    tenant: Tenant,
    settings: Annotated[Settings, Depends(get_settings)],
    celery: Annotated[Any, Depends(get_celery_app)],
) -> ParseAccepted:
    """Queue ``codegraph.parse_and_index_repository`` for the caller's tenant. Follow it with
    ``GET /tasks/{task_id}`` or ``GET /tasks/{task_id}/events``."""
    if not _within_roots(body.repo_path, settings):
        raise _error(422, "path_not_allowed",
                     f"{body.repo_path} is outside the directories codegraph may read "
                     "(OFFLOAD_CODEGRAPH_ROOTS)")
    repo_id = body.repo_id or default_repo_id(body.repo_path)
    from offload.apps.codegraph.tasks import parse_and_index_repository

    try:
        result = parse_and_index_repository.on_app(celery).apply_async(
            kwargs={"tenant_id": tenant, "repo_id": repo_id, "repo_path": body.repo_path},
            task_id=tenant_task_id(tenant))
    except Exception as exc:
        raise _error(503, "broker_unavailable",
                     f"could not queue the task: {type(exc).__name__}") from exc
    return ParseAccepted(task_id=result.id, status="queued", repo_id=repo_id,
                         status_url=f"/tasks/{result.id}",
                         events_url=f"/tasks/{result.id}/events")


@router.get("", response_model=list[Repository])
async def list_repositories(tenant: Tenant, session: Session) -> list[dict]:
    """The caller's repositories."""
    async with _database(session) as conn:
        return [r for r in await queries.list_repositories(conn, tenant) if r["generation"]]


@router.get("/{repo_id}", response_model=Repository,
            responses={404: {"description": "No such repository"}})
async def get_repository(repo_id: RepoId, tenant: Tenant, session: Session) -> dict:
    """One repository: where it was read from, when, and the last run's statistics."""
    async with _database(session) as conn:
        return await _repository_or_404(conn, tenant, repo_id)


@router.get("/{repo_id}/symbols", response_model=SymbolPage,
            responses={404: {"description": "No such repository"}})
async def search_symbols(
    repo_id: RepoId,
    tenant: Tenant,
    session: Session,
    q: Annotated[str, Query(max_length=200, pattern=NO_NUL,
                            description="Part of a name or qualified name (any case).")] = "",
    kind: Annotated[list[SymbolKind] | None, Query(description="Only these kinds.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SymbolPage:
    """Classes, functions, methods ... whose name contains ``q``; exact names first."""
    async with _database(session) as conn:
        await _repository_or_404(conn, tenant, repo_id)
        found = await queries.search_symbols(conn, tenant, repo_id, q, list(kind or []),
                                             limit + 1, offset)
    more = len(found) > limit
    return SymbolPage(repo_id=repo_id, query=q, symbols=found[:limit],
                      next_offset=offset + limit if more else None)


@router.get("/{repo_id}/symbols/{qualified_name:path}/callers", response_model=Callers,
            responses={404: {"description": "No such repository or symbol"}})
async def symbol_callers(repo_id: RepoId, qualified_name: QualifiedName, tenant: Tenant,
                         session: Session) -> Callers:
    """Who calls the symbol (also an external name such as ``os.path.join``)."""
    symbol, found = await _calls(session, tenant, repo_id, qualified_name, queries.callers,
                                 node_required=False)
    return Callers(repo_id=repo_id, qualified_name=qualified_name, symbol=symbol,
                   callers=found)


@router.get("/{repo_id}/symbols/{qualified_name:path}/callees", response_model=Callees,
            responses={404: {"description": "No such repository or symbol"}})
async def symbol_callees(repo_id: RepoId, qualified_name: QualifiedName, tenant: Tenant,
                         session: Session) -> Callees:
    """What the symbol calls: resolved targets with their location, others as written."""
    symbol, found = await _calls(session, tenant, repo_id, qualified_name, queries.callees,
                                 node_required=True)
    return Callees(repo_id=repo_id, qualified_name=qualified_name, symbol=symbol,
                   callees=found)


async def _calls(session: AsyncSession, tenant: str, repo_id: str, qualified_name: str,
                 read: Any, *, node_required: bool) -> tuple[dict | None, list[dict]]:
    """The symbol named ``qualified_name`` and ``read``'s rows about it; 404 when the
    repository or (``node_required``, or nothing found) the symbol does not exist."""
    async with _database(session) as conn:
        await _repository_or_404(conn, tenant, repo_id)
        symbol = await queries.get_node(conn, tenant, repo_id, qualified_name)
        found = [] if symbol is None and node_required else await read(
            conn, tenant, repo_id, qualified_name)
    if symbol is None and (node_required or not found):
        raise _error(404, "symbol_not_found", f"nothing named {qualified_name!r} in {repo_id}")
    return symbol, found


@router.get("/{repo_id}/files/{path:path}/outline", response_model=Outline,
            responses={404: {"description": "No such repository or file"}})
async def file_outline(repo_id: RepoId, path: FilePath, tenant: Tenant,
                       session: Session) -> dict:
    """The file's classes, functions and methods, nested as in the source."""
    async with _database(session) as conn:
        await _repository_or_404(conn, tenant, repo_id)
        found = await queries.outline(conn, tenant, repo_id, path)
    if found is None:
        raise _error(404, "file_not_found", f"no file {path!r} in {repo_id}")
    return {"repo_id": repo_id, **found}
