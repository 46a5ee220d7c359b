"""Binding offload's Celery app to a web framework.

``create_worker_app(web_app=app)`` accepts a Flask or FastAPI (Starlette) application: the
integration module gives the settings, the task base class and the binding. Django projects
use :func:`offload.integrations.django.create_celery_app`.
Each framework module is imported only when its framework is used, and names the extra to
install when the framework is missing.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from celery import Celery

from offload.errors import ConfigurationError

__all__ = ["bind_web_app", "integration_for", "task_base_for"]


def _is_instance_of(obj: Any, module: str, cls: str) -> bool:
    mod = sys.modules.get(module)
    klass = getattr(mod, cls, None) if mod is not None else None
    return klass is not None and isinstance(obj, klass)


def integration_for(web_app: Any) -> ModuleType:
    """The integration module that knows ``web_app``'s framework."""
    if _is_instance_of(web_app, "flask", "Flask"):
        from offload.integrations import flask

        return flask
    if _is_instance_of(web_app, "starlette.applications", "Starlette"):
        from offload.integrations import fastapi

        return fastapi
    raise ConfigurationError(
        f"create_worker_app(web_app=...) got a {type(web_app).__qualname__}; offload binds to "
        "Flask and FastAPI/Starlette apps (Django: offload.integrations.django.create_celery_app)"
    )


def task_base_for(web_app: Any) -> type | None:
    """The task base class the worker app should use for ``web_app`` (None: Celery's own)."""
    module = integration_for(web_app)
    make = getattr(module, "task_base", None)
    return make(web_app) if make is not None else None


def bind_web_app(celery_app: Celery, web_app: Any) -> None:
    """Attach ``celery_app`` to ``web_app`` the way its framework expects."""
    integration_for(web_app).bind(celery_app, web_app)
