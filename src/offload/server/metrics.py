"""Prometheus metrics of the HTTP service (``GET /metrics``)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

__all__ = ["MetricsMiddleware", "render_metrics"]


def _metric(kind: type, name: str, doc: str, labels: tuple[str, ...]) -> Any:
    """One collector per process, whatever number of apps are built (tests build many)."""
    existing = REGISTRY._names_to_collectors.get(name)
    return existing if existing is not None else kind(name, doc, labels)


def _collectors() -> tuple[Any, Any]:
    requests = _metric(
        Counter, "offload_http_requests", "HTTP requests served", ("method", "route", "status")
    )
    seconds = _metric(
        Histogram, "offload_http_request_seconds", "HTTP request duration", ("method", "route")
    )
    return requests, seconds


class MetricsMiddleware:
    """ASGI middleware counting requests by route template (not raw path) and status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests, self.seconds = _collectors()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.requests.labels(method, template, str(status["code"])).inc()
            self.seconds.labels(method, template).observe(time.perf_counter() - started)


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
