"""``@simple_task`` and ``@db_task``: check the options when the task is defined, then make
the function a Celery task on every app that includes its module.

Registration is shared-task style (the task exists on apps created before or after the
decorator runs), with one refinement: an app built by :mod:`offload.factory` takes the tasks
defined anywhere under its ``task_packages`` and in its ``task_modules`` (and their
submodules); any other Celery app takes them all. So a test app configured with
``task_packages=[]`` never inherits, say, the credits app's beat schedule.

The decorated name is a :class:`TaskProxy`: ``.delay()``/``.apply_async()`` (and every other
task attribute) reach the task on the app in use — the app of the task running in this
thread, else the current app, else the app that most recently registered it.
"""

from __future__ import annotations

import inspect
import numbers
import threading
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from celery import _state as celery_state
from celery.local import Proxy
from celery.schedules import schedule as celery_schedule
from celery.utils.functional import head_from_fun

from offload.errors import ConfigurationError, TaskDefinitionError
from offload.settings import QUEUES
from offload.tasks.base import OffloadTask
from offload.tasks.policies import RetryPolicy, normalize_retry_policy

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

    from offload.tasks.context import TaskContext

__all__ = ["TaskProxy", "TaskSpec", "db_task", "registered_specs", "simple_task"]

P = ParamSpec("P")
R = TypeVar("R")

OPTIONS = ("name", "retry_policy", "queue", "time_limit", "soft_time_limit", "dedup", "schedule")


@dataclass(eq=False)
class TaskSpec:
    """A task as declared: the function and its checked options."""

    name: str
    fn: Callable[..., Any]
    kind: str  # "simple" | "db"
    policy: RetryPolicy
    queue: str
    time_limit: float | None
    soft_time_limit: float | None
    dedup: bool
    schedule: Any
    _tasks: dict[int, weakref.ref[OffloadTask]] = field(default_factory=dict, repr=False)
    _order: list[weakref.ref[OffloadTask]] = field(default_factory=list, repr=False)

    @property
    def module(self) -> str:
        return self.fn.__module__

    def identity(self) -> tuple[str, str]:
        """Same qualified name in the same source file (or module): the same function, even
        when imported again or under a second module name."""
        code = getattr(inspect.unwrap(self.fn), "__code__", None)
        return (self.fn.__qualname__, getattr(code, "co_filename", None) or self.fn.__module__)

    def task_on(self, app: Any) -> OffloadTask | None:
        ref = self._tasks.get(id(app))
        task = ref() if ref is not None else None
        if task is not None and task._app is app:
            return task
        return None

    def latest_task(self) -> OffloadTask | None:
        for ref in reversed(self._order):
            task = ref()
            if task is not None:
                return task
        return None


_specs: dict[str, TaskSpec] = {}
_lock = threading.RLock()


def registered_specs() -> dict[str, TaskSpec]:
    """Every task declared in this process, by name."""
    with _lock:
        return dict(_specs)


# --- option checks -----------------------------------------------------------------------------
def _positive_seconds(option: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise TaskDefinitionError(f"{option} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_schedule(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return celery_schedule(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if value <= 0:
            raise TaskDefinitionError(f"schedule must be positive, got {value!r}")
        return celery_schedule(timedelta(seconds=float(value)))
    if callable(getattr(value, "is_due", None)):
        return value
    raise TaskDefinitionError(
        "schedule must be a celery schedule (crontab(...), schedule(...)), a timedelta or "
        f"seconds; got {value!r}"
    )


def _build_spec(kind: str, fn: Any, options: dict[str, Any]) -> TaskSpec:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TaskDefinitionError(
            f"unknown option(s) {', '.join(unknown)} for @{kind}_task; "
            f"known: {', '.join(OPTIONS)}"
        )
    decorator = f"@{'db' if kind == 'db' else 'simple'}_task"
    name = options.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TaskDefinitionError(f"{decorator} needs name='...' (a unique, non-empty task name)")
    if not callable(fn) or not inspect.isfunction(inspect.unwrap(fn)):
        raise TaskDefinitionError(f"{decorator}({name!r}) decorates functions only, got {fn!r}")
    is_coroutine = inspect.iscoroutinefunction(fn)
    if kind == "db" and not is_coroutine:
        raise TaskDefinitionError(f"@db_task({name!r}) needs an `async def` function")
    if kind == "simple" and is_coroutine:
        raise TaskDefinitionError(
            f"@simple_task({name!r}) got an `async def` function; use @db_task for async tasks"
        )
    params = [
        p for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not params:
        raise TaskDefinitionError(f"{decorator}({name!r}): the first parameter must be the "
                                  "TaskContext (def task(ctx, ...))")
    queue = options.get("queue", "default")
    if queue not in QUEUES:
        raise TaskDefinitionError(f"unknown queue {queue!r} for {name!r}; use one of "
                                  f"{', '.join(QUEUES)}")
    time_limit = _positive_seconds("time_limit", options.get("time_limit"))
    soft_time_limit = _positive_seconds("soft_time_limit", options.get("soft_time_limit"))
    if time_limit and soft_time_limit and soft_time_limit >= time_limit:
        raise TaskDefinitionError(
            f"{name!r}: soft_time_limit ({soft_time_limit}) must be below time_limit "
            f"({time_limit}) so the task can clean up"
        )
    dedup = options.get("dedup", False)
    if not isinstance(dedup, bool):
        raise TaskDefinitionError(f"dedup must be True or False, got {dedup!r}")
    return TaskSpec(
        name=name,
        fn=fn,
        kind=kind,
        policy=normalize_retry_policy(options.get("retry_policy", "standard")),
        queue=queue,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        dedup=dedup,
        schedule=_check_schedule(options.get("schedule")),
    )


# --- registration ------------------------------------------------------------------------------
def app_includes(app: Any, module: str) -> bool:
    """Whether an app takes tasks defined in ``module``: an offload app when the module is
    under one of its ``task_packages`` or is (or is under) one of its ``task_modules``; any
    other Celery app always."""
    settings = getattr(app, "offload_settings", None)
    if settings is None:
        return True
    roots = (*settings.task_packages, *settings.task_modules)
    return any(module == root or module.startswith(root + ".") for root in roots)


def _register_on(app: Any, spec: TaskSpec) -> OffloadTask | None:
    existing = spec.task_on(app)
    if existing is not None:
        return existing
    if not app_includes(app, spec.module):
        return None
    task = app._task_from_fun(
        spec.fn,
        name=spec.name,
        base=OffloadTask,
        run=OffloadTask._run,
        __header__=staticmethod(head_from_fun(spec.fn, bound=True)),
        offload_spec=spec,
        offload_kind=spec.kind,
        offload_schedule=spec.schedule,
        queue=spec.queue,
        time_limit=spec.time_limit,
        soft_time_limit=spec.soft_time_limit,
        max_retries=spec.policy.max_retries,
    )
    if not isinstance(task, OffloadTask) or task.offload_spec is not spec:
        raise TaskDefinitionError(
            f"task name {spec.name!r} is already used on app {app.main!r} by another task"
        )
    ref = weakref.ref(task)
    with _lock:
        spec._tasks[id(app)] = ref
        spec._order.append(ref)
    return task


def _declare(spec: TaskSpec) -> TaskSpec:
    with _lock:
        existing = _specs.get(spec.name)
        if existing is not None:
            if existing.identity() != spec.identity():
                raise TaskDefinitionError(
                    f"duplicate task name {spec.name!r}: already defined by "
                    f"{existing.module}.{existing.fn.__qualname__}; task names must be unique"
                )
            # The same function imported again (reload, a second import path): keep one
            # spec, so every app's task object calls the newest code.
            for attr in ("fn", "kind", "policy", "queue", "time_limit", "soft_time_limit",
                         "dedup", "schedule"):
                setattr(existing, attr, getattr(spec, attr))
            spec = existing
        else:
            _specs[spec.name] = spec
            celery_state.connect_on_app_finalize(lambda app, spec=spec: _register_on(app, spec))
    # Outside our lock: finalizing apps take their mutex first and then ours.
    for app in list(celery_state._get_active_apps()):
        if app.finalized:
            with app._finalize_mutex:
                _register_on(app, spec)
    return spec


def _resolve(spec: TaskSpec) -> OffloadTask:
    running = celery_state.get_current_task()
    if running is not None:
        task = spec.task_on(running._app) or (
            _register_on(running._app, spec) if running._app.finalized else None)
        if task is not None:
            return task
    app = celery_state._tls.current_app
    if app is not None:
        task = spec.task_on(app)
        if task is None and spec.name in app.tasks:  # finalizes an app not yet finalized
            task = spec.task_on(app)
        if task is not None:
            return task
    task = spec.latest_task()
    if task is not None:
        return task
    raise ConfigurationError(
        f"task {spec.name!r} is on no Celery app yet: create one first, e.g. "
        f"offload.create_worker_app(settings=load_settings(task_modules=[{spec.module!r}]))"
    )


class TaskProxy(Proxy, Generic[P, R]):
    """The object ``@simple_task``/``@db_task`` return: a Celery task of the app in use.

    Declared attributes (``name``, ``queue``, ``offload_schedule``, ``time_limit``,
    ``soft_time_limit``, ``retry_policy``, ``dedup``) and :meth:`run_with` work without any
    app; everything else is forwarded to the task on the app in use.
    """

    __slots__ = ()

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(_resolve, args=(spec,), name=spec.fn.__name__, __doc__=spec.fn.__doc__)
        object.__setattr__(self, "offload_spec", spec)

    offload_spec: TaskSpec

    # What the decorator declared, answered without any app.
    name = property(attrgetter("offload_spec.name"))
    queue = property(attrgetter("offload_spec.queue"))
    offload_schedule = property(attrgetter("offload_spec.schedule"))
    time_limit = property(attrgetter("offload_spec.time_limit"))
    soft_time_limit = property(attrgetter("offload_spec.soft_time_limit"))
    retry_policy = property(attrgetter("offload_spec.policy"))
    dedup = property(attrgetter("offload_spec.dedup"))

    def run_with(self, ctx: TaskContext, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the undecorated function with ``ctx`` (e.g. a ``TaskTestContext``); for a
        ``@db_task`` this returns the coroutine to await."""
        return self.offload_spec.fn(ctx, *args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        return self._get_current_object().apply_async(args, kwargs)

    def on_app(self, app: Celery) -> OffloadTask:
        """This task on ``app`` (registered now if the app includes its module)."""
        task = self.offload_spec.task_on(app) or _register_on(app, self.offload_spec)
        if task is None:
            raise ConfigurationError(
                f"app {app.main!r} does not include {self.offload_spec.module!r}; add it to "
                "task_modules (OFFLOAD_TASK_MODULES)"
            )
        return task

    def _get_class(self) -> type:
        try:
            return self._get_current_object().__class__
        except ConfigurationError:
            return type(self)

    def __repr__(self) -> str:
        spec = self.offload_spec
        return f"<@{spec.kind}_task {spec.name} queue={spec.queue}>"


def _decorator(kind: str, fn: Any, options: dict[str, Any]) -> Any:
    if fn is not None:
        raise TaskDefinitionError(
            f"use @{kind}_task(name='...') with parentheses and a task name"
        )

    def decorate(func: Any) -> Any:
        return TaskProxy(_declare(_build_spec(kind, func, options)))

    return decorate


def simple_task(
    _fn: Any = None, /, **options: Any
) -> Callable[[Callable[Concatenate[TaskContext, P], R]], TaskProxy[P, R]]:
    """Make a plain function a task: ``@simple_task(name="x.y", retry_policy="standard",
    queue="default", time_limit=None, soft_time_limit=None, dedup=False, schedule=None)``.

    The function takes a :class:`~offload.tasks.context.TaskContext` first. Unknown options,
    a missing name, a name already used by another function, an unknown queue or retry
    policy raise :class:`~offload.errors.TaskDefinitionError` at once.
    """
    return _decorator("simple", _fn, options)


def db_task(
    _fn: Any = None, /, **options: Any
) -> Callable[
    [Callable[Concatenate[TaskContext, P], Coroutine[Any, Any, R]]],
    TaskProxy[P, Coroutine[Any, Any, R]],
]:
    """Like :func:`simple_task` for an ``async def`` function that gets ``ctx.session``, an
    async SQLAlchemy session on ``settings.database``: committed when the function returns,
    rolled back when it raises, closed always."""
    return _decorator("db", _fn, options)
