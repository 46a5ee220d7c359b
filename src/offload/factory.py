"""The single source of truth for Celery app creation: worker, scheduler (beat), monitor.

Container entry points import the apps lazily::

    celery -A offload.factory:worker_app worker
    celery -A offload.factory:scheduler_app beat
    celery -A offload.factory:monitor_app flower

Each is built from :class:`~offload.settings.Settings` on first access (module
``__getattr__``), so importing this module connects to nothing and reads no environment.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from datetime import timedelta
from typing import Any

from celery import Celery
from kombu import Queue

from offload.errors import ConfigurationError
from offload.logs import configure_logging, get_logger
from offload.settings import QUEUES, Settings, load_settings, url_scheme

__all__ = [
    "beat_schedule_of",
    "create_monitor_app",
    "create_scheduler_app",
    "create_worker_app",
    "make_default",
    "settings_of",
]

_SETTINGS_ATTR = "offload_settings"


def settings_of(app: Celery) -> Settings:
    """The settings an app was built with (read from the environment for foreign apps)."""
    settings = getattr(app, _SETTINGS_ATTR, None)
    if settings is None:
        settings = load_settings()
        setattr(app, _SETTINGS_ATTR, settings)
    return settings


def make_default(app: Celery, force: bool = False) -> bool:
    """Make ``app`` Celery's default app (what ``shared_task`` proxies and the threads pool
    resolve to), unless another app was already chosen; ``force`` replaces it anyway.

    One process normally runs one offload app; when a test builds several, the first that
    was chosen keeps running its worker's tasks instead of having them silently re-routed.
    """
    from celery import _state

    current = _state.default_app
    if force or current is None or current is app or current.main == "default":
        app.set_default()
        return True
    return False


def _is_redis(url: str) -> bool:
    return url_scheme(url) in {"redis", "rediss", "sentinel"}


def _redis_transport_options(settings: Settings, visibility_timeout: float) -> dict[str, Any]:
    return {
        "visibility_timeout": int(visibility_timeout),
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }


def _route_by_declared_queue(
    name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None, **_: Any
) -> dict[str, Any] | None:
    """Send a task to the queue its decorator declared (``send_task`` by name included)."""
    queue = getattr(task, "queue", None)
    return {"queue": queue} if queue else None


def _base_conf(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "enable_utc": True,
        "timezone": "UTC",
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
    }
    if _is_redis(settings.broker):
        conf["broker_transport_options"] = {
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": settings.socket_connect_timeout,
            "retry_on_timeout": True,
        }
    elif settings.broker_in_process:
        # The in-process queue is polled; the default 1 s would add up to a second per task.
        conf["broker_transport_options"] = {"polling_interval": 0.05}
    return conf


def _new_app(
    name: str,
    settings: Settings,
    backend: str | None,
    conf: dict[str, Any],
    task_cls: type | str | None = None,
) -> Celery:
    configure_logging(settings)
    app = Celery(name, broker=settings.broker, backend=backend, task_cls=task_cls)
    app.conf.update(conf)
    setattr(app, _SETTINGS_ATTR, settings)
    return app


def _import_task_modules(settings: Settings) -> list[str]:
    """Import each package's ``tasks`` module and each extra module; return what was loaded."""
    loaded = []
    for package in settings.task_packages:
        if importlib.util.find_spec(package) is None:
            raise ConfigurationError(
                f"task package {package!r} (OFFLOAD_TASK_PACKAGES) cannot be imported; "
                "install it or remove it from the list"
            )
        module = f"{package}.tasks"
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"task package {package!r} has no tasks.py module; add one or list the module "
                "in OFFLOAD_TASK_MODULES instead"
            )
        loaded.append(module)
    loaded.extend(settings.task_modules)
    for module in loaded:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"task module {module!r} failed to import: {exc}; check OFFLOAD_TASK_MODULES"
            ) from exc
    return loaded


def beat_schedule_of(app: Celery) -> dict[str, dict[str, Any]]:
    """Collect the periodic tasks that the app's task modules declared.

    A task declares its schedule with ``@simple_task(..., schedule=crontab(...))``; settings'
    ``beat_overrides`` replace a schedule by a plain interval (used by tests and demos).
    """
    settings = settings_of(app)
    schedule: dict[str, dict[str, Any]] = {}
    for name, task in sorted(app.tasks.items()):
        declared = getattr(task, "offload_schedule", None)
        if declared is None:
            continue
        entry: dict[str, Any] = {"task": name, "schedule": declared}
        queue = getattr(task, "queue", None)
        if queue:
            entry["options"] = {"queue": queue}
        if name in settings.beat_overrides:
            entry["schedule"] = timedelta(seconds=settings.beat_overrides[name])
        schedule[name] = entry
    unknown = set(settings.beat_overrides) - set(schedule)
    if unknown:
        raise ConfigurationError(
            f"OFFLOAD_BEAT_OVERRIDES names tasks with no declared schedule: {sorted(unknown)}"
        )
    return schedule


def _longest_unacked(app: Celery, settings: Settings) -> float:
    """The longest a live worker may keep a message unacknowledged (acks_late): held until
    its ETA — for a retry of an offload task up to its policy's ``max_delay`` — and then run
    up to its hard time limit. The Redis visibility timeout must exceed this, or a message
    still held or running is delivered to a second worker."""
    longest = settings.task_time_limit
    for task in app.tasks.values():
        limit = float(getattr(task, "time_limit", None) or settings.task_time_limit)
        spec = getattr(task, "offload_spec", None)
        delay = float(spec.policy.max_delay) if spec is not None and spec.policy.max_retries else 0.0
        longest = max(longest, limit + delay)
    return longest


def _restore_options(visibility_timeout: float) -> dict[str, Any]:
    """How soon kombu gives a dead worker's unacknowledged messages to another worker.

    kombu sweeps every ``unacked_restore_interval * unacked_restore_throttle`` seconds
    (default 10 * 10) for messages older than the visibility timeout. Keep that period at
    1/20 of the timeout (between 1 s and kombu's 100 s), so a lost message comes back at most
    ~5 % after its timeout; the throttle stays at kombu's 10, so consumers without an event
    loop scan no more often than before. A worker killed during its sweep leaves kombu's
    sweep mutex behind until it expires (default 300 s): scale that with the period too.
    """
    period = min(100.0, max(1.0, visibility_timeout / 20))
    return {
        "unacked_restore_interval": period / 10,
        "unacked_restore_throttle": 10,
        "unacked_mutex_expire": int(min(300, max(10, 3 * period))),
    }


def _result_backend(settings: Settings) -> str:
    """The results URL, or the in-process store while the SurrealDB backend is not installed."""
    url = settings.results
    if not url_scheme(url).startswith("surrealdb"):
        return url
    if importlib.util.find_spec("offload.backends.surrealdb") is not None:
        return url
    if settings.results_embedded:
        get_logger("offload.factory").warning(
            "results_in_memory",
            reason="the SurrealDB result backend (offload.backends.surrealdb) is not installed",
            configured=url,
            using="cache+memory://",
        )
        return "cache+memory://"
    raise ConfigurationError(
        f"OFFLOAD_RESULT_BACKEND={url!r} needs offload.backends.surrealdb, which is missing; "
        "reinstall offload or use a redis:// result backend"
    )


def _full_app(name: str, settings: Settings, task_cls: type | str | None = None) -> Celery:
    """Worker and scheduler share one configuration: they must agree on every task option."""
    conf = _base_conf(settings)
    conf.update(
        task_track_started=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_pool=settings.pool,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_soft_time_limit,
        result_expires=timedelta(seconds=settings.result_expires),
        result_extended=True,
        task_default_queue="default",
        task_queues=tuple(Queue(q, routing_key=q) for q in QUEUES),
        task_create_missing_queues=False,
        task_routes=(_route_by_declared_queue,),
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        surrealdb_url=settings.surrealdb_url,
        surrealdb_namespace=settings.surrealdb_namespace,
        surrealdb_database=settings.surrealdb_database,
        surrealdb_username=settings.surrealdb_username,
        surrealdb_password=(
            settings.surrealdb_password.get_secret_value() if settings.surrealdb_password else None
        ),
    )
    if settings.worker_concurrency:
        conf["worker_concurrency"] = settings.worker_concurrency
    if settings.results_embedded or settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = _new_app(name, settings, _result_backend(settings), conf, task_cls)
    _import_task_modules(settings)
    visibility = _longest_unacked(app, settings) + settings.visibility_timeout_margin
    transport = _redis_transport_options(settings, visibility)
    if _is_redis(settings.broker):
        app.conf.broker_transport_options = {**transport, **_restore_options(visibility)}
    if _is_redis(settings.results):
        app.conf.update(
            result_backend_transport_options=transport,
            redis_socket_timeout=settings.socket_timeout,
            redis_socket_connect_timeout=settings.socket_connect_timeout,
            redis_retry_on_timeout=True,
            redis_backend_health_check_interval=25,
        )
    app.conf.beat_schedule = beat_schedule_of(app)
    return app


def create_worker_app(
    web_app: Any = None,
    name: str = "offload_worker",
    settings: Settings | None = None,
    task_cls: type | str | None = None,
) -> Celery:
    """The app a worker runs: every task module imported, queues, routing, reliability flags.

    ``web_app`` (a Flask or FastAPI application) binds the Celery app to that framework: its
    settings come from the framework's configuration and its tasks run in the framework's
    context (see :mod:`offload.integrations`). ``task_cls`` replaces Celery's task base class.
    """
    if web_app is None:
        return _full_app(name, settings or load_settings(), task_cls)
    from offload.integrations import integration_for

    integration = integration_for(web_app)
    settings = settings or integration.settings_for(web_app)
    if task_cls is None and hasattr(integration, "task_base"):
        task_cls = integration.task_base(web_app)
    app = _full_app(name, settings, task_cls)
    integration.bind(app, web_app)
    return app


def create_scheduler_app(
    name: str = "offload_scheduler", settings: Settings | None = None
) -> Celery:
    """The app ``celery beat`` runs: the same configuration plus the declared schedule."""
    return _full_app(name, settings or load_settings())


def create_monitor_app(name: str = "offload_monitor", settings: Settings | None = None) -> Celery:
    """A broker-only app for Flower: no task module, no database, no embedded store."""
    settings = settings or load_settings()
    if not settings.broker_url or settings.broker_in_process:
        raise ConfigurationError(
            "the monitor (Flower) needs a shared broker: set OFFLOAD_BROKER_URL, for example "
            "OFFLOAD_BROKER_URL=redis://127.0.0.1:6379/0 (the in-process memory:// broker "
            "cannot be watched from another process)"
        )
    backend = settings.result_backend
    if backend is None or settings.results_embedded:
        backend = settings.broker_url if _is_redis(settings.broker_url) else None
    return _new_app(name, settings, backend, _base_conf(settings))


_LAZY = {
    "worker_app": create_worker_app,
    "scheduler_app": create_scheduler_app,
    "monitor_app": create_monitor_app,
}
_lazy_lock = threading.Lock()


def __getattr__(name: str) -> Celery:
    builder = _LAZY.get(name)
    if builder is None:
        raise AttributeError(f"module 'offload.factory' has no attribute {name!r}")
    with _lazy_lock:
        if name not in globals():
            globals()[name] = builder()
        return globals()[name]
