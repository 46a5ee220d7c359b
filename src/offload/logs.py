"""Structured logging: JSON in production, readable in development.

Every line a task writes carries ``task_id``, ``task_name`` and (where present) ``tenant``,
whether it comes from structlog or from a plain ``logging`` logger (Celery's own included):
:func:`add_task_context` reads them from the Celery task running in the thread, and
structlog's context variables are merged too.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from offload.settings import Settings

_lock = threading.Lock()
#: Loggers whose INFO lines say nothing to an operator (Alembic lists its plug-ins each run).
_CHATTY_AT_INFO = ("alembic.runtime.plugins",)
_configured: tuple[str, str] | None = None


#: Attribute of a running task's Celery request holding more fields for its log lines
#: (offload tasks put ``tenant`` and ``ctx.bind_log_context(...)`` fields there).
LOG_FIELDS_ATTR = "offload_log_fields"


def add_task_context(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Add ``task_id`` / ``task_name`` of the Celery task running in this thread, if any,
    and the fields its request carries (:data:`LOG_FIELDS_ATTR`).

    Lines written by a task, Celery's own about it included, get them this way; nothing
    needs binding or unbinding per task, and nothing leaks past the task's request.
    """
    if "task_id" in event and "task_name" in event:
        return event
    from celery._state import get_current_task

    task = get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    task_id = getattr(request, "id", None)
    if task_id:
        event.setdefault("task_id", task_id)
        event.setdefault("task_name", task.name)
        fields = getattr(request, LOG_FIELDS_ATTR, None)
        if fields:
            for key, value in fields.items():
                event.setdefault(key, value)
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        add_task_context,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def resolve_format(settings: Settings) -> str:
    if settings.log_format != "auto":
        return settings.log_format
    return "console" if settings.broker_in_process or sys.stderr.isatty() else "json"


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging through one renderer. Idempotent per format/level."""
    global _configured
    fmt, level = resolve_format(settings), settings.log_level.upper()
    with _lock:
        if _configured == (fmt, level):
            return
        renderer: Any = (
            structlog.processors.JSONRenderer()
            if fmt == "json"
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        structlog.configure(
            processors=[
                *_shared_processors(),
                structlog.processors.format_exc_info if fmt == "json" else _identity,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        handler = _StderrHandler()
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_shared_processors(),
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
        handler.set_name("offload")
        root = logging.getLogger()
        for existing in list(root.handlers):
            if existing.get_name() == "offload":
                root.removeHandler(existing)
        root.addHandler(handler)
        root.setLevel(level)
        for name in _CHATTY_AT_INFO:
            logging.getLogger(name).setLevel(logging.WARNING if level == "INFO" else logging.NOTSET)
        _keep_celery_off_logging()
        _configured = (fmt, level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time, so a later redirection (pytest's
    capture, a daemonising wrapper) never leaves the handler writing to a closed stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def _celery_logging_is_ours(**_: Any) -> None:
    """Receiver of Celery's ``setup_logging``: its presence tells Celery not to install its
    own handlers (which would print task lines in another format, bypassing ours)."""


def _keep_celery_off_logging() -> None:
    from celery import signals

    signals.setup_logging.connect(_celery_logging_is_ours, weak=False, dispatch_uid="offload")


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event


def get_logger(name: str = "offload") -> Any:
    return structlog.stdlib.get_logger(name)
