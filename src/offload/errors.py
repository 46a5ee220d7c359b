"""Every error offload raises, under one root.

    OffloadError
    ├── ConfigurationError            bad or missing settings; raised at start-up
    ├── ResultStoreError              the result backend cannot do what was asked
    │   ├── ResultStoreUnavailable    connection lost and reconnecting gave up
    │   └── EmbeddedStoreLocked       an embedded SurrealDB store is held by another process
    ├── TaskDefinitionError           a decorator was used wrongly (raised at import)
    ├── TaskError                     raised inside tasks; carries structured context
    │   ├── NonRetriableTaskError     fails at once, never retried
    │   │   ├── TaskValidationError
    │   │   ├── TaskNotFoundError
    │   │   └── TaskConfigurationError
    │   └── RetriableTaskError        retried according to the task's policy
    └── CircuitBreakerOpen            a guarded call was refused because its breaker is open

Foreign errors (SurrealDB, SQLAlchemy, redis) are converted at the boundary of the module that
talks to them, so callers only ever need to catch these classes.
"""

from __future__ import annotations

from typing import Any


class OffloadError(Exception):
    """Root of every offload error; the class docstring is the default message."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())


class ConfigurationError(OffloadError, ValueError):
    """offload is misconfigured; fix the named setting and start again."""


class ResultStoreError(OffloadError):
    """The result backend could not complete the operation."""


class ResultStoreUnavailable(ResultStoreError):
    """The result store is unreachable and reconnecting gave up."""


class EmbeddedStoreLocked(ResultStoreError):
    """An embedded SurrealDB store can be opened by one process only.

    Use a SurrealDB server (surrealdb+ws://host:8000/rpc) for several processes, or run the
    worker with the threads or solo pool (-P threads / -P solo).
    """


class TaskDefinitionError(OffloadError):
    """A task decorator was given an invalid option."""


class TaskError(OffloadError):
    """An error raised by task code, carrying structured context into logs and results."""

    retriable: bool = True

    def __init__(self, message: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.context: dict[str, Any] = context

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_task_error, (type(self), str(self), self.context))

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self), **self.context}


def _rebuild_task_error(cls: type[TaskError], message: str, context: dict[str, Any]) -> TaskError:
    return cls(message, **context)


class NonRetriableTaskError(TaskError):
    """The task failed in a way that retrying cannot fix."""

    retriable = False


class RetriableTaskError(TaskError):
    """The task failed for a passing reason; it is retried per its policy."""


class TaskValidationError(NonRetriableTaskError):
    """The task was given invalid arguments."""


class TaskNotFoundError(NonRetriableTaskError):
    """Something the task needs does not exist."""


class TaskConfigurationError(NonRetriableTaskError):
    """The task cannot run with the current configuration."""


class CircuitBreakerOpen(OffloadError):
    """The circuit breaker is open: calls are refused until its reset timeout passes."""
