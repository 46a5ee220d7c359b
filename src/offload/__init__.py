"""offload: dependable Celery background work.

Importing this package opens no connection and reads no environment; that happens when an
app is created (:mod:`offload.factory`) or settings are loaded.
"""

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

__all__ = [
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
