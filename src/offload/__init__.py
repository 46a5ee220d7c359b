"""offload: dependable Celery background work.

Importing this package opens no connection and reads no environment; that happens when an
app is created (:mod:`offload.factory`) or settings are loaded. It is also cheap: the public
names below are imported on first use (module ``__getattr__``), so ``import offload`` (or
``import offload.errors``) does not pull in Celery, SQLAlchemy or pydantic.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time see __getattr__
    from offload.errors import (
        CircuitBreakerOpen,
        ConfigurationError,
        EmbeddedStoreLocked,
        NonRetriableTaskError,
        OffloadError,
        ResultStoreError,
        ResultStoreUnavailable,
        RetriableTaskError,
        TaskConfigurationError,
        TaskDefinitionError,
        TaskError,
        TaskNotFoundError,
        TaskValidationError,
    )
    from offload.factory import create_monitor_app, create_scheduler_app, create_worker_app
    from offload.settings import Settings, load_settings
    from offload.tasks import (
        RetryPolicy,
        StatsCounter,
        TaskContext,
        TaskMetrics,
        Timer,
        db_task,
        register_retry_policy,
        simple_task,
    )

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - grouped by topic, not sorted
    # configuration and app factories
    "Settings",
    "load_settings",
    "create_monitor_app",
    "create_scheduler_app",
    "create_worker_app",
    # task framework
    "RetryPolicy",
    "StatsCounter",
    "TaskContext",
    "TaskMetrics",
    "Timer",
    "db_task",
    "register_retry_policy",
    "simple_task",
    # errors
    "CircuitBreakerOpen",
    "ConfigurationError",
    "EmbeddedStoreLocked",
    "NonRetriableTaskError",
    "OffloadError",
    "ResultStoreError",
    "ResultStoreUnavailable",
    "RetriableTaskError",
    "TaskConfigurationError",
    "TaskDefinitionError",
    "TaskError",
    "TaskNotFoundError",
    "TaskValidationError",
]

#: Where each public name lives (imported on first access, then cached in this module).
_SOURCES = {
    **dict.fromkeys(["Settings", "load_settings"], "offload.settings"),
    **dict.fromkeys(
        ["create_monitor_app", "create_scheduler_app", "create_worker_app"], "offload.factory"
    ),
    **dict.fromkeys(
        ["RetryPolicy", "StatsCounter", "TaskContext", "TaskMetrics", "Timer", "db_task",
         "register_retry_policy", "simple_task"],
        "offload.tasks",
    ),
    **dict.fromkeys(
        ["CircuitBreakerOpen", "ConfigurationError", "EmbeddedStoreLocked",
         "NonRetriableTaskError", "OffloadError", "ResultStoreError", "ResultStoreUnavailable",
         "RetriableTaskError", "TaskConfigurationError", "TaskDefinitionError", "TaskError",
         "TaskNotFoundError", "TaskValidationError"],
        "offload.errors",
    ),
}


def __getattr__(name: str) -> object:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'offload' has no attribute {name!r}")
    value = getattr(_import_module(source), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The public names, dunders and the submodules imported so far."""
    loaded = (key for key, value in globals().items()
              if key.startswith("__") or isinstance(value, _ModuleType))
    return sorted({*__all__, *loaded})
