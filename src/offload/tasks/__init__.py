"""The task framework: ``@simple_task``, ``@db_task``, :class:`TaskContext`, retry policies.

    decorators   @simple_task / @db_task, option checks, shared registration, TaskProxy
    base         OffloadTask: context, error mapping, retries, dedup, metrics, log context
    context      TaskContext (what a task body gets), Batches
    policies     RetryPolicy, the named policies, register_retry_policy
    errors       which failures retry and which fail at once
    dedup        atomic claims before publishing (Redis, SurrealDB, in-process)
    progress     throttled PROGRESS state
    loop         one event loop per process/thread (the async bridge)
    session      one engine per loop; commit / rollback / close
    metrics      Prometheus TaskMetrics, Timer, StatsCounter
    logcontext   task_id / task_name / tenant on every log line
"""

from offload.tasks.base import OffloadTask
from offload.tasks.context import TaskContext
from offload.tasks.decorators import TaskProxy, db_task, simple_task
from offload.tasks.metrics import StatsCounter, TaskMetrics, Timer
from offload.tasks.policies import (
    RetryPolicy,
    get_retry_policy,
    normalize_retry_policy,
    register_retry_policy,
    retry_policies,
)
from offload.tasks.progress import PROGRESS

__all__ = [
    "PROGRESS",
    "OffloadTask",
    "RetryPolicy",
    "StatsCounter",
    "TaskContext",
    "TaskMetrics",
    "TaskProxy",
    "Timer",
    "db_task",
    "get_retry_policy",
    "normalize_retry_policy",
    "register_retry_policy",
    "retry_policies",
    "simple_task",
]
