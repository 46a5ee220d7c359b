"""The credit ledger's periodic tasks. The factory puts each declared ``schedule`` into the
beat schedule (``settings.beat_overrides`` replaces one by an interval in tests and demos).

| task                            | schedule                | queue        | retries        |
|---------------------------------|-------------------------|--------------|----------------|
| ``credits.cleanup_expired_holds``  | every 3 h, on the hour  | low_priority | 3 x 60 s ->    |
| ``credits.allocate_monthly``       | 1st of month, 00:00 UTC | default      | 8 x 60 s ->    |
| ``credits.process_pending``        | every 15 min            | low_priority | 3 x 60 s ->    |
| ``credits.sync_usage``             | every 10 min            | low_priority | 3 x 30 s ->    |

All four are ``dedup=True``: a beat that fires while the previous run is still queued or
running publishes nothing. Correctness never depends on that: every sweep is safe to run twice
at once (row locks, ``SKIP LOCKED``, idempotency keys; see :mod:`.sweeps`). Each works in
batches of ``settings.credits_batch_size`` committed one by one (``ctx.commit_batch``), so a
retry resumes where the failed run stopped. Domain errors are non-retriable; database and
sink trouble is retried with exponential backoff.

The credits schema must exist (``offload.apps.credits.schema.upgrade``, run by the server and
the CLI at start-up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from celery.schedules import crontab

from offload import RetryPolicy, TaskContext, db_task
from offload.apps.credits import sweeps
from offload.apps.credits.service.config import CreditsConfig
from offload.apps.credits.sinks import sink_from_settings

SWEEP_RETRIES = RetryPolicy(max_retries=3, base_delay=60, max_delay=600)
# A missed allocation is a month without credits: keep trying for well over an hour.
ALLOCATION_RETRIES = RetryPolicy(max_retries=8, base_delay=60, max_delay=900)
# The next run comes in 10 minutes anyway; retry quickly a few times, then leave it to it.
SYNC_RETRIES = RetryPolicy(max_retries=3, base_delay=30, max_delay=240)

SWEEP_LIMITS: dict[str, Any] = {"time_limit": 1800, "soft_time_limit": 1680}


def _periodic(name: str, queue: str, retry_policy: RetryPolicy, schedule: crontab) -> Any:
    """The decorator of a ledger sweep: a ``@db_task`` on ``schedule``, deduplicated, with the
    sweeps' time limits."""
    return db_task(name=name, queue=queue, retry_policy=retry_policy, schedule=schedule,
                   dedup=True, **SWEEP_LIMITS)


async def _run_sweep(
    ctx: TaskContext, sweep: Callable[..., Awaitable[dict[str, Any]]], done: str, *args: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``sweep`` in the task's batches (``ctx.iter_batches`` / ``commit_batch``) with its
    stats counter; log its summary and return it as the task's result."""
    stats = ctx.create_stats_counter()
    try:
        summary = await sweep(ctx.session, *args, batches=ctx, stats=stats, **kwargs)
    except Exception:
        ctx.log_warning("sweep stopped; the batches committed so far stay done",
                        **stats.to_dict())
        raise
    ctx.log_success(done, **summary)
    return ctx.success_result(**summary)


@_periodic("credits.cleanup_expired_holds", "low_priority", SWEEP_RETRIES,
           crontab(minute=0, hour="*/3"))
async def cleanup_expired_holds(ctx: TaskContext) -> dict[str, Any]:
    """Release every active hold past its expiry, returning its credits exactly once."""
    config = CreditsConfig.from_settings(ctx.settings)
    return await _run_sweep(ctx, sweeps.cleanup_expired_holds, "expired holds released",
                            batch_size=config.batch_size)


@_periodic("credits.allocate_monthly", "default", ALLOCATION_RETRIES,
           crontab(minute=0, hour=0, day_of_month=1))
async def allocate_monthly(ctx: TaskContext, period: str | None = None) -> dict[str, Any]:
    """Grant every subscriber its tier's allowance for ``period`` ('YYYY-MM', default: the
    current UTC month), once per user and period however often this runs."""
    config = CreditsConfig.from_settings(ctx.settings)
    return await _run_sweep(ctx, sweeps.allocate_monthly, "monthly credits allocated",
                            config=config, period=period)


@_periodic("credits.process_pending", "low_priority", SWEEP_RETRIES, crontab(minute="*/15"))
async def process_pending(ctx: TaskContext) -> dict[str, Any]:
    """Settle transactions pending longer than ``settings.credits_pending_max_age``."""
    config = CreditsConfig.from_settings(ctx.settings)
    return await _run_sweep(ctx, sweeps.process_pending, "stale pending transactions settled",
                            max_age=config.pending_max_age, batch_size=config.batch_size)


@_periodic("credits.sync_usage", "low_priority", SYNC_RETRIES, crontab(minute="*/10"))
async def sync_usage(ctx: TaskContext) -> dict[str, Any]:
    """Mirror completed transactions to the analytics sink (``settings.analytics_sink``);
    rows are marked synced only after the sink acknowledged them (a failed batch stays
    unsynced for the retry or the next run)."""
    sink = sink_from_settings(ctx.settings)
    if sink is None:
        ctx.log_info("no analytics sink configured (OFFLOAD_ANALYTICS_SINK=none); nothing sent")
        return ctx.success_result(synced=0, skipped=0, sink="none")
    try:
        result = await _run_sweep(ctx, sweeps.sync_usage, "usage synced", sink,
                                  batch_size=ctx.settings.credits_batch_size)
    finally:
        await sink.aclose()
    return {**result, "sink": ctx.settings.analytics_sink}


__all__ = ["allocate_monthly", "cleanup_expired_holds", "process_pending", "sync_usage"]
