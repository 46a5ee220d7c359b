"""Log context of a running task: ``task_id``, ``task_name`` and ``tenant`` on every line.

Nothing is bound or unbound per task in the worker thread. ``task_id``/``task_name`` come
from Celery's current task (:func:`offload.logs.add_task_context`), and the task's extra
fields — a ``tenant``/``tenant_id`` keyword argument, ``ctx.bind_log_context(...)`` — live in
one dict attached to the task's Celery request (:data:`offload.logs.LOG_FIELDS_ATTR`), which
``add_task_context`` merges into each line written while that request runs: the body's lines
and Celery's own ("Task ... succeeded", "... retry: ..."), never a line after it.

A ``@db_task`` body runs in an asyncio task, whose context variables are a copy discarded
when it ends; there the fields are also bound as structlog context variables (:func:`bind`),
so they follow the coroutine to a loop in another thread (an async caller's ``apply()``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from offload.logs import LOG_FIELDS_ATTR

__all__ = ["TENANT_KWARGS", "attach", "bind", "in_task_context", "task_fields"]

#: A task keyword argument with one of these names is logged as ``tenant``.
TENANT_KWARGS = ("tenant", "tenant_id")


def task_fields(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The log fields a task starts with: ``tenant`` from its keyword arguments, if any."""
    if kwargs:
        for key in TENANT_KWARGS:
            value = kwargs.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return {"tenant": value}
    return {}


def attach(request: Any, fields: dict[str, Any]) -> None:
    """Make ``fields`` (kept, not copied: later additions count) part of every line logged
    while ``request`` runs."""
    setattr(request, LOG_FIELDS_ATTR, fields)


def in_task_context() -> bool:
    """Whether the caller runs inside an asyncio task (whose context variables die with it)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no running loop
        return False


def bind(**fields: Any) -> None:
    """Bind ``fields`` as structlog context variables (inside an asyncio task only: anywhere
    else they would outlive the task)."""
    fields = {key: value for key, value in fields.items() if value is not None}
    if fields:
        structlog.contextvars.bind_contextvars(**fields)
