"""codegraph's Celery task: ``codegraph.parse_and_index_repository``.

Only ids and a path travel in the message; the database comes from settings. Retries: 3, at
~60 s, ~120 s, ~240 s (exponential, capped at 600 s, ±10 % jitter) for storage and connection
errors; none for a bad tenant id, repository id or path (TenantValidationError,
TaskValidationError, RepositoryParseError) — they fail at once with a message that says what
to change. Time limits: 1 h hard, 55 min soft (the soft limit rolls the transaction back, so a
half-written graph is never committed).

Progress (state ``PROGRESS``): 10 % connecting, 20 % scanning, 30 % parsing then per file up
to 80 %, storing per file up to 95 %, 100 % done; ``files_done``, ``files_total`` and
``current_file`` in the meta. A task waiting in the queue cannot report: the API answers
PENDING (no progress) there, which clients show as 0 % "queued".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError

from offload import RetryPolicy, TaskContext, db_task
from offload.apps.codegraph.errors import RepositoryParseError, TenantValidationError
from offload.apps.codegraph.ingest import ingest_repository
from offload.errors import TaskConfigurationError

__all__ = ["RETRY_POLICY", "RepositoryParseError", "TenantValidationError",
           "parse_and_index_repository"]

RETRY_POLICY = RetryPolicy(max_retries=3, base_delay=60, max_delay=600, jitter=0.1)
TIME_LIMIT = 3600.0
SOFT_TIME_LIMIT = 3300.0


@db_task(
    name="codegraph.parse_and_index_repository",
    retry_policy=RETRY_POLICY,
    queue="default",
    time_limit=TIME_LIMIT,
    soft_time_limit=SOFT_TIME_LIMIT,
)
async def parse_and_index_repository(
    ctx: TaskContext, tenant_id: str, repo_id: str, repo_path: str
) -> dict[str, Any]:
    """Parse every source file of ``repo_path`` and store its code graph as repository
    ``repo_id`` of ``tenant_id`` (incrementally: unchanged files are skipped)."""
    ctx.bind_log_context(tenant=str(tenant_id)[:64], repo_id=str(repo_id)[:128])
    ctx.log_info("ingesting repository", repo_path=str(repo_path)[:500], attempt=ctx.retries + 1)
    try:
        result = await ingest_repository(
            ctx.session,
            tenant_id=tenant_id,
            repo_id=repo_id,
            repo_path=repo_path,
            settings=ctx.settings,
            progress=ctx.report_progress,
            task_id=ctx.task_id,
        )
    except (OperationalError, ProgrammingError) as exc:
        if _missing_schema(exc):
            raise TaskConfigurationError(
                "the code graph tables do not exist in OFFLOAD_DATABASE_URL; run "
                "`offload migrate` (or start the service, which migrates) and resubmit",
            ) from exc
        raise
    for failure in result["failures"]:
        ctx.log_warning("file not parsed", path=failure["path"], reason=failure["reason"])
    ctx.log_success(
        "repository indexed",
        files_parsed=result["files_parsed"], files_unchanged=result["files_unchanged"],
        nodes=result["nodes_created"], edges=result["edges_created"],
        duration_s=result["duration_s"],
    )
    return ctx.success_result(**result)


def _missing_schema(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)
