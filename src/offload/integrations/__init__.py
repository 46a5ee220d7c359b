"""Binding offload's Celery app to a web framework.

``create_worker_app(web_app=app)`` accepts a Flask or FastAPI (Starlette) application: the
integration module gives the settings, the task base class and the binding. Django projects
use :func:`offload.integrations.django.create_celery_app`.
Each framework module is imported only when its framework is used, and names the extra to
install when the framework is missing.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from celery import Celery

from offload.errors import ConfigurationError
from offload.settings import Settings, load_settings

__all__ = ["bind_web_app", "integration_for", "settings_from", "split_config", "task_base_for"]


def split_config(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(offload setting overrides, other Celery settings)`` from a framework's Celery
    configuration (Flask's ``config["CELERY"]``, Django's ``CELERY_*``); keys in any case."""
    lowered = {str(key).lower(): value for key, value in values.items()}
    fields = Settings.model_fields
    ours = {key: value for key, value in lowered.items() if key in fields}
    celery_conf = {key: value for key, value in lowered.items() if key not in fields}
    return ours, celery_conf


def settings_from(ours: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Settings from the environment, then the framework's ``ours``, then ``overrides``. Only
    the project's own task modules are loaded unless ``task_packages`` is set."""
    return load_settings(**{"task_packages": [], **ours, **overrides})


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
