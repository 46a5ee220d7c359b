"""The Celery task class behind ``@simple_task`` and ``@db_task``.

Each app gets its own subclass per task (built by :mod:`offload.tasks.decorators`); the
behaviour lives here: build the :class:`TaskContext`, run the body (through the async bridge
and a session for db tasks), map errors to retry-or-fail, attach the log fields, record
metrics, claim and release dedup keys. Nothing here listens to Celery's per-task signals
(``task_prerun``/``task_postrun``): connecting them makes Celery send both for every task of
the worker, offload's or not.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import Task, signals
from celery.backends.base import DisabledBackend
from celery.exceptions import SoftTimeLimitExceeded

from offload.logs import get_logger
from offload.tasks import logcontext
from offload.tasks.context import TaskContext
from offload.tasks.dedup import (
    DEDUP_HEADER,
    OWNER_HEADER,
    claim_store_for,
    dedup_key_of,
    derived_key,
    owner_token,
    task_id_of,
)
from offload.tasks.errors import Outcome, classify, describe, for_result, render_message
from offload.tasks.loop import run_async, shutdown
from offload.tasks.metrics import TaskRecorder, default_metrics, serve_metrics
from offload.tasks.progress import ProgressReporter
from offload.tasks.session import session_scope

if TYPE_CHECKING:
    from offload.settings import Settings
    from offload.tasks.decorators import TaskSpec

__all__ = ["OffloadTask"]

_log = get_logger("offload.tasks")


class OffloadTask(Task):
    """Base class of every offload task (one subclass per task and app)."""

    offload_spec: TaskSpec
    offload_kind: str = "simple"
    offload_schedule: Any = None
    queue: str = "default"
    _offload_settings_cache: Settings | None = None
    _offload_recorder: TaskRecorder | None = None

    # --- what tests and the factory read ------------------------------------------------------
    @property
    def offload_settings(self) -> Settings:
        settings = self._offload_settings_cache
        if settings is None:  # first use on this app's task object
            from offload.factory import settings_of

            settings = self._offload_settings_cache = settings_of(self.app)
        return settings

    @property
    def retry_policy(self) -> Any:
        return self.offload_spec.policy

    def run_with(self, ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:
        """Call the decorated function with ``ctx`` (a coroutine for a ``@db_task``)."""
        return self.offload_spec.fn(ctx, *args, **kwargs)

    # --- publishing -------------------------------------------------------------------------------
    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: Any = None,
        dedup_key: str | None = None,
        **options: Any,
    ) -> Any:
        """Celery's ``apply_async`` plus ``dedup_key``: while a task holding that key is queued
        or running, return its ``AsyncResult`` and publish nothing (see
        :mod:`offload.tasks.dedup`). With ``dedup=True`` on the task, ``task_id`` (or, without
        one, the arguments) is the key."""
        spec = self.offload_spec
        if dedup_key is None and not spec.dedup:
            return super().apply_async(args, kwargs, task_id, producer, link, link_error,
                                       shadow, **options)
        headers = options.get("headers") or {}
        if DEDUP_HEADER in headers:  # a retry (or re-publish) of a task that holds its claim
            return super().apply_async(args, kwargs, task_id, producer, link, link_error,
                                       shadow, **options)
        if dedup_key is None:
            dedup_key = task_id if task_id is not None else derived_key(args, kwargs)
        if not isinstance(dedup_key, str) or not dedup_key:
            from offload.errors import TaskValidationError

            raise TaskValidationError("dedup_key must be a non-empty str", task=self.name)
        settings = self.offload_settings
        store = claim_store_for(self.app, settings)
        key = dedup_key_of(self.name, dedup_key)
        task_id = task_id or str(uuid.uuid4())
        owner = owner_token(task_id)
        holder = store.claim(key, owner, settings.dedup_ttl)
        if holder is not None:
            existing = task_id_of(holder)
            _log.debug("deduplicated send", task_name=self.name, dedup_key=dedup_key,
                       existing_task_id=existing)
            return self.AsyncResult(existing)
        options["headers"] = {**headers, DEDUP_HEADER: key, OWNER_HEADER: owner}
        try:
            return super().apply_async(args, kwargs, task_id, producer, link, link_error,
                                       shadow, **options)
        except BaseException:
            store.release(key, owner)
            raise

    def _release_claim(self, request: Any) -> None:
        """Free the dedup claim of a run that is over (success, or failure for good); a
        retry keeps it (:meth:`_refresh_claim`). Done as the body ends, in the task's own
        code path: no ``after_return`` hook, which Celery would then call for every run."""
        claim = _claim_of(request)
        if claim is None:
            return
        try:
            claim_store_for(self.app, self.offload_settings).release(*claim)
        except Exception as exc:  # noqa: BLE001 - the claim then expires by its TTL
            _log.warning("dedup claim not released", key=claim[0], error=repr(exc))

    def _refresh_claim(self, request: Any) -> None:
        claim = _claim_of(request)
        if claim is None:
            return
        store = claim_store_for(self.app, self.offload_settings)
        refresh = getattr(store, "refresh", None)
        if refresh is not None:
            try:
                refresh(*claim, self.offload_settings.dedup_ttl)
            except Exception as exc:  # noqa: BLE001
                _log.warning("dedup claim not refreshed", key=claim[0], error=repr(exc))

    # --- running ---------------------------------------------------------------------------------
    def _metrics(self) -> TaskRecorder:
        recorder = self._offload_recorder
        if recorder is None:
            recorder = self._offload_recorder = default_metrics().recorder(self.name)
        return recorder

    def _make_context(self, request: Any) -> TaskContext:
        fields = logcontext.task_fields(request.kwargs)
        logcontext.attach(request, fields)
        reporter = None
        if request.id is not None and not request.called_directly:
            reporter = partial(self._progress_reporter, request)  # built on the first report
        return TaskContext(
            task_id=request.id,
            task_name=self.name,
            retries=request.retries or 0,
            settings=self.offload_settings,
            reporter=reporter,
            log_fields=fields,
        )

    def _progress_reporter(self, request: Any) -> ProgressReporter | None:
        backend = self.backend
        if isinstance(backend, DisabledBackend):
            return None
        return ProgressReporter(backend, request.id, request,
                                self.offload_settings.progress_min_interval)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """The task's ``run``: the body with its context, for a ``@db_task`` through the
        async bridge and a session; then metrics, claim release, or what a failure means."""
        request = self.request
        ctx = self._make_context(request)
        metrics = self._metrics()
        started = metrics.started()
        try:
            if self.offload_kind == "db":
                result = run_async(self._db_body(ctx, args, kwargs))
            else:
                result = self.offload_spec.fn(ctx, *args, **kwargs)
        except BaseException as exc:
            ctx._finish()
            self._failed(ctx, exc, request, metrics, started)
            raise
        ctx._finish()
        metrics.finished("success", started)
        self._release_claim(request)
        return result

    async def _db_body(self, ctx: TaskContext, args: Any, kwargs: Any) -> Any:
        # this asyncio task's own context: the fields follow the coroutine (to another
        # thread's loop too) and vanish with it
        logcontext.bind(task_id=ctx.task_id, task_name=ctx.task_name, **ctx._log_fields)
        async with session_scope(ctx.settings.database) as session:
            ctx._session = session
            try:
                return await self.offload_spec.fn(ctx, *args, **kwargs)
            finally:
                ctx._session = None

    def _failed(self, ctx: TaskContext, exc: BaseException, request: Any,
                metrics: TaskRecorder, started: float) -> None:
        """Decide what ``exc`` means; raise a Retry, a clearer error, or return to re-raise."""
        outcome = classify(exc)
        if outcome is Outcome.PASS:  # Celery control flow or an interrupt: not an outcome
            metrics.abandoned()
            return
        policy = self.offload_spec.policy
        if isinstance(exc, SoftTimeLimitExceeded):
            metrics.finished("failure", started)
            self._release_claim(request)
            limit = request.soft_time_limit or self.soft_time_limit or (
                ctx.settings.task_soft_time_limit)
            done = "its database work was rolled back" if self.offload_kind == "db" else (
                "it was stopped")
            message = f"task {self.name} exceeded its soft time limit ({limit} s); {done}"
            ctx.log_error("soft time limit exceeded", limit=limit)
            raise SoftTimeLimitExceeded(message) from exc
        retries = ctx.retries
        if outcome is Outcome.FAIL or retries >= policy.max_retries or request.called_directly:
            metrics.finished("failure", started)
            self._release_claim(request)
            if outcome is Outcome.FAIL:
                final = "not retriable"
            elif request.called_directly:
                final = "called directly, so not retried"
            else:
                final = f"gave up after {retries} retries"
            ctx.log_error(f"task failed: {final}", **describe(exc))
            stored = for_result(exc)
            if getattr(stored, "context", None):
                stored.args = (render_message(stored),)
            if stored is not exc:
                raise stored from exc
            return
        countdown = policy.countdown(retries)
        metrics.finished("retry", started)
        ctx.log_warning("task will be retried", attempt=retries + 1,
                        max_retries=policy.max_retries, countdown=round(countdown, 3),
                        **describe(exc))
        self._refresh_claim(request)
        raise self.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries)

def _claim_of(request: Any) -> tuple[str, str] | None:
    """(key, owner token) of the claim a run holds, if it was sent with one."""
    # custom headers arrive in request.headers and as request attributes
    source = request.headers or vars(request)
    key = source.get(DEDUP_HEADER)
    if not key:
        return None
    return key, source.get(OWNER_HEADER) or request.id


@signals.worker_process_shutdown.connect(weak=False)
def _close_loops_of_process(**_: Any) -> None:
    shutdown()


@signals.worker_shutdown.connect(weak=False)
def _close_loops_of_worker(**_: Any) -> None:
    shutdown()


@signals.worker_ready.connect(weak=False)
def _serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    """A worker of an offload app with ``metrics_port`` set serves ``/metrics``."""
    app = getattr(sender, "app", None)
    settings = getattr(app, "offload_settings", None)
    port = getattr(settings, "metrics_port", None)
    if not port:
        return
    import os

    if settings.pool == "prefork" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _log.warning("prefork tasks run in child processes: set PROMETHEUS_MULTIPROC_DIR so "
                     "their metrics reach /metrics")
    try:
        serve_metrics(port, settings.api_host)
    except OSError as exc:
        _log.error("cannot serve /metrics", port=port, error=repr(exc))
    else:
        _log.info("serving /metrics", host=settings.api_host, port=port)
