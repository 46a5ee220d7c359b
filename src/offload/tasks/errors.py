"""What a task failure means: retry it, or fail at once.

    fail at once   NonRetriableTaskError and its subclasses (TaskValidationError,
                   TaskNotFoundError, TaskConfigurationError), sqlalchemy IntegrityError,
                   SoftTimeLimitExceeded (the task ran out of time: retrying repeats that)
    retry          RetriableTaskError, OperationalError, TimeoutError, ConnectionError and
                   every other Exception, per the task's RetryPolicy
    pass through   Celery's control-flow exceptions (Retry, Ignore, Reject) and BaseException
                   that is not an Exception (KeyboardInterrupt, SystemExit, CancelledError)

SQLAlchemy's database errors cannot be rebuilt from a JSON result (their constructors need
the statement, parameters and driver error), so when one ends a task for good it is stored as
an offload error instead, at this boundary (the worker log keeps the original traceback)::

    IntegrityError                       -> TaskIntegrityError(NonRetriableTaskError)
    any other DBAPIError (OperationalError after the last retry, ...)
                                         -> TaskDatabaseError(RetriableTaskError)
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded

from offload.errors import NonRetriableTaskError, RetriableTaskError, TaskError

__all__ = [
    "Outcome",
    "TaskDatabaseError",
    "TaskIntegrityError",
    "classify",
    "describe",
    "for_result",
    "render_message",
]


class TaskIntegrityError(NonRetriableTaskError):
    """The database refused the task's writes (a unique, foreign-key or check constraint)."""


class TaskDatabaseError(RetriableTaskError):
    """The database failed the task's statement, and retrying did not help."""


class Outcome(Enum):
    RETRY = "retry"
    FAIL = "fail"
    PASS = "pass"


def _integrity_error() -> type[BaseException] | None:
    try:
        from sqlalchemy.exc import IntegrityError
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    return IntegrityError


_IntegrityError = _integrity_error()


def classify(exc: BaseException) -> Outcome:
    """Whether ``exc`` raised by a task body is retried, fails the task, or is not ours."""
    if isinstance(exc, Retry | Ignore | Reject) or not isinstance(exc, Exception):
        return Outcome.PASS
    if isinstance(exc, SoftTimeLimitExceeded):
        return Outcome.FAIL
    if isinstance(exc, TaskError):
        return Outcome.RETRY if exc.retriable else Outcome.FAIL
    if _IntegrityError is not None and isinstance(exc, _IntegrityError):
        return Outcome.FAIL
    return Outcome.RETRY


def for_result(exc: BaseException) -> BaseException:
    """The exception to store for a task that failed for good with ``exc``: ``exc`` itself, or
    an offload error when ``exc`` could not be rebuilt from the result store."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover
        return exc
    if not isinstance(exc, DBAPIError):
        return exc
    detail = str(exc.orig) if exc.orig is not None else str(exc).split("\n", 1)[0]
    if _IntegrityError is not None and isinstance(exc, _IntegrityError):
        return TaskIntegrityError(f"database integrity error: {detail}")
    return TaskDatabaseError(f"database error ({type(exc).__name__}): {detail}")


def render_message(exc: BaseException) -> str:
    """The message a failed task stores: the error's text plus its structured context.

    The result store keeps an exception's type and ``args`` only, so a
    ``TaskNotFoundError("no such user", user_id=42)`` is stored as
    ``"no such user (user_id=42)"``; logs carry the same fields as separate keys.
    """
    message = str(exc)
    context = getattr(exc, "context", None)
    if isinstance(exc, TaskError) and context:
        fields = ", ".join(f"{key}={value!r}" for key, value in context.items())
        message = f"{message} ({fields})"
    return message


def describe(exc: BaseException) -> dict[str, Any]:
    """Structured log fields for ``exc``: type, message and its context (prefixed when a key
    would clash with the log line's own fields)."""
    fields: dict[str, Any] = {"error_type": type(exc).__name__, "error": str(exc)}
    context = getattr(exc, "context", None)
    if isinstance(exc, TaskError) and context:
        for key, value in context.items():
            fields[key if key not in _RESERVED_LOG_KEYS else f"ctx_{key}"] = value
    return fields


_RESERVED_LOG_KEYS = frozenset(
    {"event", "level", "logger", "timestamp", "task_id", "task_name", "error", "error_type"}
)
