"""FastAPI integration: one lifespan for offload's resources, dependencies for routes, tenancy.

::

    from fastapi import Depends, FastAPI
    from offload.integrations.fastapi import current_tenant, get_celery_app, offload_lifespan

    app = FastAPI(lifespan=offload_lifespan())          # settings from the environment

    @app.post("/reports")
    def start(tenant: str = Depends(current_tenant)):
        task = build_report.apply_async(kwargs={"tenant": tenant},
                                        task_id=tenant_task_id(tenant))
        return {"task_id": task.id}

Tenancy: API keys map to tenant ids (``settings.api_keys``); ``Authorization: Bearer <key>``
picks the tenant. Task ids made by :func:`tenant_task_id` start with a hash of the tenant, so
:func:`task_belongs_to` can tell, without any lookup, whether a tenant may see a task.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from celery import Celery
from fastapi import Depends, FastAPI, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from offload.settings import Settings

__all__ = [
    "bind",
    "current_tenant",
    "get_celery_app",
    "get_engine",
    "get_session",
    "get_settings",
    "offload_lifespan",
    "settings_for",
    "task_belongs_to",
    "tenant_of_key",
    "tenant_of_request",
    "tenant_task_id",
]

_TENANT_HASH_CHARS = 16
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- tenancy ------------------------------------------------------------------------------
def _tenant_hash(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:_TENANT_HASH_CHARS]


def tenant_task_id(tenant: str) -> str:
    """A fresh task id that carries ``tenant``: ``<16 hex of sha256(tenant)>-<uuid4>``."""
    return f"{_tenant_hash(tenant)}-{uuid.uuid4()}"


def task_belongs_to(task_id: str, tenant: str) -> bool:
    """Whether ``task_id`` was made by :func:`tenant_task_id` for ``tenant``: the tenant's
    hash (compared in constant time), then a canonical UUID and nothing else."""
    prefix = _tenant_hash(tenant) + "-"
    mine = hmac.compare_digest(task_id[: len(prefix)].encode(), prefix.encode())
    return mine and _UUID.fullmatch(task_id[len(prefix):]) is not None


def tenant_of_key(key: str, api_keys: Mapping[str, str]) -> str | None:
    """The tenant whose API key is ``key``, comparing against every key in constant time."""
    found = None
    candidate = key.encode()
    for known, tenant in api_keys.items():
        if hmac.compare_digest(candidate, known.encode()):
            found = tenant
    return found


# --- state and lifespan ---------------------------------------------------------------------
def settings_for(web_app: FastAPI) -> Settings:
    """The settings already attached to ``web_app``, else the environment's."""
    from offload.settings import load_settings

    return getattr(web_app.state, "offload_settings", None) or load_settings()


def bind(
    celery_app: Celery, web_app: FastAPI, settings: Settings | None = None, owns: bool = True
) -> None:
    """Attach ``celery_app`` and its settings to ``web_app``; its lifespan then opens a
    database engine and closes it (and ``celery_app`` when ``owns``) at shutdown."""
    from offload.factory import settings_of

    web_app.state.celery_app = celery_app
    web_app.state.offload_owns_celery = owns
    web_app.state.offload_settings = settings or settings_of(celery_app)
    if not getattr(web_app.state, "offload_lifespan_wrapped", False):
        inner = web_app.router.lifespan_context
        web_app.router.lifespan_context = _wrap_lifespan(inner)
        web_app.state.offload_lifespan_wrapped = True


def _wrap_lifespan(inner: Callable[[Any], AbstractAsyncContextManager[Any]]) -> Callable[..., Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with _resources(app), inner(app) as state:
            yield state

    return lifespan


@asynccontextmanager
async def _resources(app: FastAPI) -> AsyncIterator[None]:
    """Make the Celery app the default one (for ``task.delay()``) and own a database engine."""
    from offload.factory import make_default

    celery_app: Celery = app.state.celery_app
    make_default(celery_app)
    engine: AsyncEngine | None = getattr(app.state, "engine", None)
    own_engine = engine is None
    if own_engine:
        from offload.db import create_engine

        engine = create_engine(app.state.offload_settings.database)
        app.state.engine = engine
    try:
        yield
    finally:
        if own_engine:
            await engine.dispose()
            app.state.engine = None
        if getattr(app.state, "offload_owns_celery", False):
            celery_app.close()


def offload_lifespan(
    settings: Settings | None = None,
    celery_app: Celery | None = None,
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    """A ``lifespan`` for ``FastAPI(lifespan=...)``: builds the worker app (or uses
    ``celery_app``) at start-up, opens a database engine, closes both at shutdown.
    ``inner`` is your own lifespan, run inside offload's."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        from offload.factory import create_worker_app, settings_of
        from offload.settings import load_settings

        celery = celery_app or create_worker_app(settings=settings or load_settings())
        app.state.celery_app = celery
        app.state.offload_owns_celery = celery_app is None
        app.state.offload_settings = settings or settings_of(celery)
        async with _resources(app):
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state

    return lifespan


# --- dependencies ---------------------------------------------------------------------------
def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise RuntimeError(
            f"offload is not set up on this FastAPI app ({name} missing): use "
            "FastAPI(lifespan=offload_lifespan()) or create_worker_app(web_app=app)"
        )
    return value


def get_settings(request: Request) -> Settings:
    """Dependency: the offload :class:`~offload.settings.Settings` of this service."""
    return _state(request, "offload_settings")


def get_celery_app(request: Request) -> Celery:
    """Dependency: the Celery app this service submits to and reads results from."""
    return _state(request, "celery_app")


def get_engine(request: Request) -> AsyncEngine:
    """Dependency: the service's async SQLAlchemy engine (opened by the lifespan)."""
    return _state(request, "engine")


async def get_session(engine: AsyncEngine = Depends(get_engine)) -> AsyncIterator[AsyncSession]:
    """Dependency: an ``AsyncSession``, closed after the request (commit it yourself)."""
    from offload.db import session_maker

    async with session_maker(engine)() as session:
        yield session


def _api_keys(request: Request, settings: Settings) -> Mapping[str, str]:
    # `offload dev` adds its demo key here; otherwise the configured keys.
    return getattr(request.app.state, "offload_api_keys", None) or settings.api_keys


def tenant_of_request(request: Request, settings: Settings) -> str | None:
    """The tenant of the request's ``Authorization: Bearer <key>``, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return tenant_of_key(key.strip(), _api_keys(request, settings))
    return None


def current_tenant(request: Request, settings: Settings = Depends(get_settings)) -> str:
    """Dependency: the tenant of the request's ``Authorization: Bearer <key>``; 401 otherwise."""
    tenant = tenant_of_request(request, settings)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or unknown API key (send Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.tenant = tenant
    return tenant
