"""Structured logging: JSON in production, readable in development.

Task code binds ``task_id``, ``task_name`` and (where present) ``tenant`` into structlog's
context variables when a task starts, so every line a task writes carries them, whether it
comes from structlog or from a plain ``logging`` logger (Celery's own included).
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
_configured: tuple[str, str] | None = None


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
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
        handler = logging.StreamHandler(sys.stderr)
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
        _configured = (fmt, level)


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event


def get_logger(name: str = "offload") -> Any:
    return structlog.stdlib.get_logger(name)
