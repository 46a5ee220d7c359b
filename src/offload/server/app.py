"""The offload HTTP service: health, task status (JSON and SSE), metrics, app routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from offload.checks import check_services
from offload.errors import ResultStoreError
from offload.integrations.fastapi import (
    bind,
    current_tenant,
    get_celery_app,
    get_engine,
    get_settings,
    task_belongs_to,
    tenant_of_request,
)
from offload.logs import get_logger
from offload.plugins import plugin_hooks, upgrade_schemas
from offload.server.dashboard import DASHBOARD_HTML
from offload.server.metrics import MetricsMiddleware, render_metrics
from offload.settings import Settings
from offload.status import task_events, task_status

__all__ = ["create_api"]

log = get_logger("offload.server")


def _owned_task(task_id: str, tenant: str, celery_app: Celery):
    # Another tenant's task and a task that never existed look the same: 404.
    if not task_belongs_to(task_id, tenant):
        raise HTTPException(404, detail="task not found")
    return celery_app.AsyncResult(task_id)


def create_api(
    settings: Settings,
    celery_app: Celery,
    *,
    api_keys: Mapping[str, str] | None = None,
    health_timeout: float = 3.0,
) -> FastAPI:
    """The FastAPI service over ``celery_app``.

    ``api_keys`` replaces ``settings.api_keys`` (``offload dev`` adds its demo key). Each task
    package's ``<pkg>.api.router`` is mounted now; its ``<pkg>.schema.upgrade(engine)`` runs at
    start-up, before the first request is served.
    """
    packages = list(settings.task_packages)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrated = await upgrade_schemas(packages, app.state.engine)
        if migrated:
            log.info("schemas_upgraded", packages=migrated)
        yield

    from offload import __version__

    app = FastAPI(title="offload", version=__version__, lifespan=lifespan)
    bind(celery_app, app, settings, owns=False)
    app.state.offload_api_keys = dict(api_keys) if api_keys is not None else None
    app.add_middleware(MetricsMiddleware)

    @app.get("/health", tags=["service"])
    async def health(request: Request) -> JSONResponse:
        """Whether broker, result store and database answer (each within a few seconds).

        Anyone (a load balancer) sees which service is down; only a caller with a valid API
        key also sees why, since the reasons name hosts and ports."""
        settings = get_settings(request)
        checks = await check_services(
            get_celery_app(request), get_engine(request), settings.database,
            timeout=health_timeout,
        )
        ok = all(check.ok for check in checks)
        detailed = tenant_of_request(request, settings) is not None
        body = {
            "status": "ok" if ok else "unavailable",
            "checks": {
                c.name: {"ok": c.ok, "seconds": c.seconds}
                | ({"detail": c.detail} if detailed else {})
                for c in checks
            },
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/tasks/{task_id}", tags=["tasks"])
    async def get_task(
        task_id: str,
        tenant: str = Depends(current_tenant),
        celery: Celery = Depends(get_celery_app),
    ) -> dict:
        """The task's state, progress, result or error (404 for another tenant's task, 503
        while the result store does not answer)."""
        import asyncio

        result = _owned_task(task_id, tenant, celery)
        try:
            return await asyncio.to_thread(task_status, result)
        except ResultStoreError as exc:
            log.warning("task_status_unavailable", task_id=task_id, error=str(exc))
            raise HTTPException(503, detail="the result store is unavailable (see /health)"
                                ) from None

    @app.get("/tasks/{task_id}/events", tags=["tasks"])
    async def task_event_stream(
        task_id: str,
        timeout: float | None = Query(None, gt=0, le=86400, description="Stop after seconds."),
        tenant: str = Depends(current_tenant),
        celery: Celery = Depends(get_celery_app),
    ) -> StreamingResponse:
        """Server-sent events: ``progress`` while the task runs, then one ``done``."""
        result = _owned_task(task_id, tenant, celery)

        async def stream() -> AsyncIterator[str]:
            try:
                async for event in task_events(result, timeout=timeout):
                    yield event.encode()
            except ResultStoreError as exc:  # the stream ends without `done`; /health says why
                log.warning("task_events_unavailable", task_id=task_id, error=str(exc))

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics", tags=["service"], include_in_schema=False)
    def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(DASHBOARD_HTML)

    for package, router in plugin_hooks(packages, "api", "router"):
        app.include_router(router)
        log.debug("router_mounted", package=package)
    return app
