"""Log context of a running task: ``task_id``, ``task_name`` and ``tenant`` on every line.

The fields live in structlog's context variables, so they reach structlog loggers and plain
``logging`` loggers alike (see :mod:`offload.logs`). The task base class binds them when a
task starts (Celery's ``task_prerun``) and drops them at ``task_postrun``, which brackets
Celery's own "Task ... succeeded" line as well as the task body.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import structlog

__all__ = ["TENANT_KWARGS", "bind", "bound_fields", "start_task", "unbind_all"]

#: A task keyword argument with one of these names is logged as ``tenant``.
TENANT_KWARGS = ("tenant", "tenant_id")

_bound: ContextVar[tuple[str, ...]] = ContextVar("offload_task_log_keys", default=())


def bind(**fields: Any) -> None:
    """Bind ``fields`` for the rest of the current task (or context)."""
    fields = {key: value for key, value in fields.items() if value is not None}
    if not fields:
        return
    structlog.contextvars.bind_contextvars(**fields)
    keys = _bound.get()
    new = tuple(key for key in fields if key not in keys)
    if new:
        _bound.set(keys + new)


def bound_fields() -> dict[str, Any]:
    """The fields bound with :func:`bind` in this context."""
    current = structlog.contextvars.get_contextvars()
    return {key: current[key] for key in _bound.get() if key in current}


def unbind_all() -> None:
    """Drop every field bound with :func:`bind` in this context."""
    keys = _bound.get()
    if keys:
        structlog.contextvars.unbind_contextvars(*keys)
        _bound.set(())


def start_task(task_id: str | None, task_name: str, kwargs: dict[str, Any] | None) -> None:
    """Bind the fields of a task that starts now (a ``tenant`` keyword argument included)."""
    unbind_all()
    tenant = None
    if kwargs:
        for key in TENANT_KWARGS:
            value = kwargs.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                tenant = value
                break
    bind(task_id=task_id, task_name=task_name, tenant=tenant)
