"""``offload dev``: the whole service in one process on the embedded defaults.

One process is the only way the embedded stores can be shared: the ``memory://`` broker exists
only inside this process and an embedded SurrealDB store may be opened by one process only. So
the worker (threads pool) and beat run in threads beside the HTTP API, never in child processes.

Start-up hooks: every task package may define ``on_dev_start(dev: DevContext)`` (sync or
async) in its ``<pkg>.cli`` module; it runs once, after the API answers and the worker
consumes, on the API's event loop. Use it to submit demo work; it must not block for long
(an ``async def`` should ``await asyncio.to_thread(...)`` for blocking calls).
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.worker import WorkController, loops
from celery.worker.consumer import Consumer

from offload.errors import ConfigurationError, EmbeddedStoreLocked
from offload.logs import get_logger
from offload.plugins import plugin_hooks
from offload.settings import QUEUES, Settings

__all__ = ["DEMO_TENANT", "DevContext", "InProcessWorker", "route_signals_to", "run_dev"]

DEMO_TENANT = "demo"
log = get_logger("offload.dev")


@dataclass(frozen=True)
class DevContext:
    """What a package's ``on_dev_start`` hook gets from ``offload dev``."""

    settings: Settings
    celery_app: Celery
    api_url: str  #: e.g. ``http://127.0.0.1:8000``
    api_key: str  #: the demo tenant's key (``Authorization: Bearer <api_key>``)
    tenant: str = DEMO_TENANT
    extra: Mapping[str, Any] = field(default_factory=dict)


#: Longest wait for a message before the blocking loop looks at a shutdown request again.
_DRAIN_TIMEOUT = 0.1


class _ShortDrain:
    """A broker connection whose ``drain_events`` waits at most :data:`_DRAIN_TIMEOUT`."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def drain_events(self, timeout: float | None = None, **kwargs: Any) -> Any:
        timeout = _DRAIN_TIMEOUT if timeout is None else min(timeout, _DRAIN_TIMEOUT)
        return self._connection.drain_events(timeout=timeout, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def _responsive_synloop(obj: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
    """Celery's blocking loop (transports without async I/O, such as ``memory://``) waits up
    to 2 s per poll and polls once more after a shutdown request: a warm shutdown of an idle
    worker took 3-4 s. With a short poll it takes a fraction of a second."""
    return loops.synloop(obj, _ShortDrain(connection), *args, **kwargs)


class _DevConsumer(Consumer):
    def __init__(self, *args: Any, hub: Any = None, **kwargs: Any) -> None:
        if hub is None:  # with a hub (Redis, AMQP) Celery's asynloop is responsive already
            self.loop = _responsive_synloop
        super().__init__(*args, hub=hub, **kwargs)


class _DevWorkController(WorkController):
    """A worker whose readiness can be awaited from another thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.consuming = threading.Event()
        kwargs.setdefault("consumer_cls", _DevConsumer)
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        super().on_consumer_ready(consumer)
        self.consuming.set()


class InProcessWorker:
    """A Celery worker (threads pool) running in a thread of this process.

    :meth:`stop` is a warm shutdown: the worker stops taking messages, waits for the tasks
    it is running, stores their results, then returns.
    """

    def __init__(
        self,
        app: Celery,
        queues: list[str] | tuple[str, ...] = QUEUES,
        concurrency: int = 4,
        hostname: str | None = None,
    ) -> None:
        self.app = app
        self.controller = _DevWorkController(
            app=app,
            hostname=hostname or f"dev@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=concurrency,
            queues=list(queues),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            optimization="fair",
        )
        self.thread = threading.Thread(
            target=self.controller.start, name="offload-worker", daemon=True
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the worker thread and return once it consumes (RuntimeError if it dies)."""
        self.thread.start()
        for _ in range(int(timeout / 0.05)):
            if self.controller.consuming.wait(0.05):
                # The worker marks the process as "inside a worker", where waiting on a
                # result is refused; the API and hooks of this process are not tasks.
                from celery.result import _set_task_join_will_block

                _set_task_join_will_block(False)
                return
            if not self.thread.is_alive():
                break
        raise RuntimeError(
            "the in-process worker did not start (see the log above for the reason)"
        )

    def request_stop(self) -> None:
        """Begin a warm shutdown and return at once (see :meth:`stop`)."""
        from celery.worker import state

        if self.thread.is_alive():
            state.should_stop = 0  # what a worker's own SIGTERM handler sets

    def stop(self, timeout: float | None = None) -> bool:
        """Warm shutdown; returns False if the worker was still busy after ``timeout``."""
        from celery.worker import state

        if self.thread.is_alive():
            self.request_stop()
            self.thread.join(timeout)
        finished = not self.thread.is_alive()
        if finished:
            state.should_stop = None
        return finished


def _claim_result_store(celery_app: Celery, settings: Settings) -> None:
    """Open the result store now, so a store held by another process (a second
    ``offload dev`` on the same data directory) stops this one before it serves anything."""
    try:
        celery_app.backend.get_task_meta("offload-dev-start-probe")
    except EmbeddedStoreLocked as exc:
        raise EmbeddedStoreLocked(
            f"{exc}. Is another `offload dev` running on {settings.data_dir.resolve()}? Stop "
            "it, or give this one its own OFFLOAD_DATA_DIR."
        ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hooks(settings: Settings) -> list[tuple[str, Callable[[DevContext], Any]]]:
    return plugin_hooks(settings.task_packages, "cli", "on_dev_start")


async def _run_hooks(server: Any, context: DevContext, hooks: list[tuple[str, Any]]) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    for package, hook in hooks:
        try:
            outcome = hook(context)
            if inspect.isawaitable(outcome):
                await outcome
            log.info("dev_start_hook_done", package=package)
        except Exception:
            log.exception("dev_start_hook_failed", package=package)


def run_dev(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    beat: bool = True,
    demo: bool = True,
    concurrency: int | None = None,
    banner: Callable[[str], None] = print,
) -> int:
    """Run API + worker + beat until SIGINT/SIGTERM; return the exit code."""
    import uvicorn
    from celery.beat import EmbeddedService

    from offload.factory import create_worker_app
    from offload.server import create_api

    host = host or settings.api_host
    port = settings.api_port if port is None else port
    if not _is_loopback(host):
        raise ConfigurationError(
            f"offload dev serves a well-known demo API key, so it listens on loopback only; "
            f"got api_host={host!r}. Use `offload api` (with OFFLOAD_API_KEYS) to serve a network."
        )
    api_key = settings.dev_api_key.get_secret_value()
    celery_app = create_worker_app(settings=settings)
    celery_app.set_default()  # the only app of this process
    _claim_result_store(celery_app, settings)
    worker = InProcessWorker(
        celery_app, queues=settings.worker_queues, concurrency=concurrency or
        settings.worker_concurrency or 4,
    )
    worker.start()
    beat_service = None
    if beat:
        beat_service = EmbeddedService(celery_app, thread=True)
        beat_service.start()

    api = create_api(settings, celery_app, api_keys={**settings.api_keys, api_key: DEMO_TENANT})
    config = uvicorn.Config(
        api, host=host, port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    api_url = f"http://{host}:{port}"
    context = DevContext(settings, celery_app, api_url, api_key)
    hooks = _hooks(settings) if demo else []

    async def serve() -> None:
        hook_task = asyncio.create_task(_run_hooks(server, context, hooks))
        banner_task = asyncio.create_task(_announce(server, api_url, api_key, banner))
        try:
            await server.serve()
        finally:
            for task in (hook_task, banner_task):
                task.cancel()

    exit_code = 0
    served = threading.Event()
    restore = route_signals_to(server, served)
    try:
        asyncio.run(serve())
    except SystemExit as exc:  # uvicorn exits when the port is taken
        exit_code = exc.code if isinstance(exc.code, int) else 1
    finally:
        served.set()
        log.info("dev_stopping", detail="finishing running tasks (Ctrl-C again to abandon them)")
        try:
            worker.request_stop()  # the worker and beat wind down side by side
            if beat_service is not None:
                beat_service.stop()
            if not worker.stop(timeout=settings.task_time_limit):
                log.error("dev_worker_still_busy")
                exit_code = exit_code or 1
        except KeyboardInterrupt:
            log.error("dev_aborted", detail="second interrupt: running tasks were abandoned")
            exit_code = 130
        finally:
            restore()
        celery_app.close()
    if server.started is False and exit_code == 0:
        exit_code = 1  # never served (port in use, start-up failure)
    log.info("dev_stopped", exit_code=exit_code)
    return exit_code


def route_signals_to(server: Any, served: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM stop the HTTP server (then the worker drains); once the server is down,
    a second SIGINT abandons the running tasks. Returns a function restoring the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(sig: int, frame: Any) -> None:
        if served.is_set():
            raise KeyboardInterrupt
        server.handle_exit(sig, frame)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


async def _announce(server: Any, api_url: str, api_key: str, banner: Callable[[str], None]) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    banner(
        f"\noffload dev is up: {api_url}  (dashboard {api_url}/, API docs {api_url}/docs)\n"
        f"  demo tenant key: {api_key}\n"
        f"  curl -H 'Authorization: Bearer {api_key}' {api_url}/tasks/<task id>\n"
        "  Ctrl-C stops it (running tasks finish first).\n"
    )
