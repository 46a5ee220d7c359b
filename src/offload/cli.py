"""The ``offload`` command.

``offload dev`` runs everything in one process on the embedded defaults; ``offload worker``,
``beat``, ``flower`` and ``api`` run the production roles from settings; ``status``,
``doctor`` and ``migrate`` are the operator's tools. Task packages add their own
sub-commands through ``<pkg>.cli.register(app)`` (see :mod:`offload.plugins`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
import threading
from typing import Annotated, Any

import typer

from offload.errors import ConfigurationError, OffloadError, ResultStoreError
from offload.settings import Settings, load_settings

__all__ = ["build_cli", "main"]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None


def _needs_shared_services(settings: Settings, role: str, results: bool = False) -> None:
    if settings.broker_in_process:
        raise _fail(
            f"`offload {role}` runs as its own process and needs a shared broker; set "
            "OFFLOAD_BROKER_URL (e.g. redis://127.0.0.1:6379/0) or use `offload dev`"
        )
    if results and settings.results_embedded:
        raise _fail(
            f"`offload {role}` cannot open the embedded result store {settings.results!r}: it "
            "belongs to the worker process. Set OFFLOAD_RESULT_BACKEND to a SurrealDB server "
            "(surrealdb+ws://host:8000/rpc) or Redis, or use `offload dev`"
        )


def _monitor_app(settings: Settings) -> Any:
    """The broker-only app (Flower, reading results); a missing broker is the start-up error."""
    from offload.factory import create_monitor_app

    try:
        return create_monitor_app(settings=settings)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None


def _log_level(settings: Settings) -> str:
    return settings.log_level.upper()


# --- commands -----------------------------------------------------------------------------
def dev(
    host: Annotated[str | None, typer.Option(help="Loopback address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8000).")] = None,
    beat: Annotated[bool, typer.Option(help="Run the periodic tasks scheduler.")] = True,
    demo: Annotated[bool, typer.Option(help="Run the packages' on_dev_start hooks.")] = True,
    concurrency: Annotated[int | None, typer.Option(help="Worker threads.")] = None,
) -> None:
    """Run the whole service in one process on the embedded defaults.

    HTTP API, a worker (threads pool, all queues) and beat, in one process. The demo tenant's
    API key is OFFLOAD_DEV_API_KEY (default dev-key); loopback only.
    """
    from offload.server.dev import run_dev

    # Options go through Settings, so a bad port or concurrency gets the start-up error.
    settings = _settings(api_host=host, api_port=port, worker_concurrency=concurrency)
    try:
        code = run_dev(settings, beat=beat, demo=demo)
    except (OffloadError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


def worker(
    queues: Annotated[str | None, typer.Option("--queues", "-Q",
                                               help="Comma-separated queues.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c")] = None,
    pool: Annotated[str | None, typer.Option("--pool", "-P",
                                             help="prefork, threads or solo.")] = None,
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Run a worker (`celery worker`) of the configured broker."""
    from offload.factory import create_worker_app

    settings = _settings(
        worker_queues=queues.split(",") if queues else None,
        worker_concurrency=concurrency,
        worker_pool=pool,
    )
    _needs_shared_services(settings, "worker")
    app = create_worker_app(settings=settings)
    argv = ["worker", "--loglevel", _log_level(settings), "--pool", settings.pool,
            "--queues", ",".join(settings.worker_queues)]
    if settings.worker_concurrency:
        argv += ["--concurrency", str(settings.worker_concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    app.worker_main(argv)


def beat() -> None:
    """Run the periodic task scheduler (`celery beat`): one per deployment."""
    from offload.factory import create_scheduler_app

    settings = _settings()
    _needs_shared_services(settings, "beat")
    app = create_scheduler_app(settings=settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", _log_level(settings),
               "--schedule", str(settings.data_dir / "celerybeat-schedule")])


def flower(
    port: Annotated[int, typer.Option(help="Flower's HTTP port.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Run Flower on the broker (monitor app: no task module, no database)."""
    if importlib.util.find_spec("flower") is None:
        raise _fail("Flower is not installed: pip install 'offload[flower]'")
    app = _monitor_app(_settings())
    # Flower stops cleanly on SIGTERM only (Ctrl-C leaves its threads running): forward it.
    signal.signal(signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    app.start(["flower", f"--port={port}", f"--address={address}"])


def api(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
) -> None:
    """Run the HTTP API (uvicorn) against the configured broker and result store."""
    import uvicorn

    from offload.factory import create_worker_app
    from offload.server import create_api
    from offload.server.dev import route_signals_to

    settings = _settings(api_host=host, api_port=port)
    _needs_shared_services(settings, "api", results=True)
    if not settings.api_keys:
        typer.secho("warning: OFFLOAD_API_KEYS is empty: every task request gets 401",
                    fg=typer.colors.YELLOW, err=True)
    celery_app = create_worker_app(settings=settings)
    celery_app.set_default()  # the only app of this process
    config = uvicorn.Config(
        create_api(settings, celery_app),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    served = threading.Event()
    restore = route_signals_to(server, served)  # SIGTERM/SIGINT: graceful stop, exit 0
    try:
        server.run()
    finally:
        served.set()
        restore()
    if not server.started:
        raise typer.Exit(1)


def status(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    watch: Annotated[bool, typer.Option("--watch", "-w",
                                        help="Follow progress until it ends.")] = False,
    api_url: Annotated[str | None, typer.Option(
        "--api", help="Ask this offload API instead of the result store "
        "(default when the result store is embedded).")] = None,
    key: Annotated[str | None, typer.Option(help="API key for --api.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Print a task's state, progress, result or error."""
    settings = _settings()
    if api_url is None and (settings.results_embedded or settings.broker_in_process):
        api_url = f"http://{settings.api_host}:{settings.api_port}"
    if api_url is not None:
        key = key or settings.dev_api_key.get_secret_value()
        final = _status_over_http(api_url.rstrip("/"), key, task_id, watch, as_json)
    else:
        final = _status_from_store(settings, task_id, watch, as_json)
    _print_status(final, as_json)
    if final.get("state") in {"FAILURE", "REVOKED"}:
        raise typer.Exit(1)


def _print_status(status_: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status_))
        return
    typer.echo(f"task     {status_['task_id']}")
    typer.echo(f"state    {status_['state']}")
    if status_.get("progress"):
        typer.echo(f"progress {json.dumps(status_['progress'])}")
    if status_.get("result") is not None:
        typer.echo(f"result   {json.dumps(status_['result'])}")
    if status_.get("error"):
        typer.echo(f"error    {status_['error']['type']}: {status_['error']['message']}")


class _Bar:
    """A rich progress bar fed by status dicts (stderr, so stdout stays parseable)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.percentage:>5.1f}%"),
                                     console=Console(stderr=True), transient=True)
            self.progress.start()
            self.bar = self.progress.add_task("PENDING", total=100)

    def update(self, status_: dict[str, Any]) -> None:
        if self.progress is None:
            return
        meta = status_.get("progress") or {}
        label = status_["state"] + (f" · {meta['stage']}" if meta.get("stage") else "")
        self.progress.update(self.bar, completed=float(meta.get("percent") or 0),
                             description=label)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _status_over_http(url: str, key: str, task_id: str, watch: bool, as_json: bool) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
            if not watch:
                response = client.get(f"/tasks/{task_id}")
                _raise_for(response, url)
                return response.json()
            bar = _Bar(enabled=not as_json)
            last: dict[str, Any] = {}
            try:
                with client.stream("GET", f"/tasks/{task_id}/events",
                                   timeout=httpx.Timeout(10.0, read=None)) as response:
                    _raise_for(response, url)
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            data = json.loads(line[6:])
                            if "state" in data:
                                last = data
                                bar.update(data)
            finally:
                bar.close()
            return last
    except httpx.TransportError as exc:
        raise _fail(f"cannot reach the offload API at {url}: {exc} (is `offload dev` "
                    "running? pass --api URL otherwise)", code=1) from None


def _raise_for(response: Any, url: str) -> None:
    if response.status_code == 401:
        raise _fail(f"{url} refused the API key (pass --key)", code=1)
    if response.status_code == 404:
        raise _fail("no such task for this API key's tenant", code=1)
    if response.status_code >= 400:
        response.read()
        raise _fail(f"{url} answered {response.status_code}: {response.text}", code=1)


def _status_from_store(settings: Settings, task_id: str, watch: bool, as_json: bool) -> dict:
    from offload.status import task_events, task_status

    result = _monitor_app(settings).AsyncResult(task_id)
    if not watch:
        try:
            return task_status(result)
        except ResultStoreError as exc:
            raise _fail(str(exc), code=1) from None

    async def follow() -> dict[str, Any]:
        bar = _Bar(enabled=not as_json)
        last: dict[str, Any] = {}
        try:
            async for event in task_events(result):
                if "state" in event.data:
                    last = event.data
                    bar.update(last)
        finally:
            bar.close()
        return last

    try:
        return asyncio.run(follow())
    except ResultStoreError as exc:
        raise _fail(str(exc), code=1) from None


def doctor(
    timeout: Annotated[float, typer.Option(help="Seconds each check may take.")] = 5.0,
) -> None:
    """Check broker, result store and database; say which is unreachable and why."""
    from offload.checks import check_services
    from offload.db import create_engine

    settings = _settings()
    typer.echo(f"settings: data_dir={settings.data_dir.resolve()} pool={settings.pool}")
    try:
        from offload.factory import create_monitor_app

        if settings.broker_in_process:
            from celery import Celery

            app = Celery("offload_doctor", broker=settings.broker,
                         backend=_doctor_backend(settings))
        else:
            app = create_monitor_app(settings=settings)
            app.conf.result_backend = _doctor_backend(settings)
    except OffloadError as exc:
        raise _fail(str(exc)) from None

    async def run() -> list[Any]:
        engine = create_engine(settings.database)
        try:
            return await check_services(app, engine, settings.database, timeout=timeout)
        finally:
            await engine.dispose()

    checks = asyncio.run(run())
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = typer.style("ok  ", fg=typer.colors.GREEN) if check.ok else typer.style(
            "FAIL", fg=typer.colors.RED)
        typer.echo(f"{mark} {check.name:<{width}}  {check.target}\n"
                   f"     {' ' * width}  {check.detail} ({check.seconds:.2f} s)")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        typer.secho(f"unreachable: {', '.join(failed)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo("all services reachable")


def _doctor_backend(settings: Settings) -> str:
    from offload.factory import _result_backend

    return _result_backend(settings)


def migrate() -> None:
    """Run every task package's schema migrations (``<pkg>.schema.upgrade``)."""
    from offload.db import create_engine
    from offload.plugins import upgrade_schemas

    settings = _settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        engine = create_engine(settings.database)
        try:
            return await upgrade_schemas(settings.task_packages, engine)
        finally:
            await engine.dispose()

    try:
        done = asyncio.run(run())
    except OffloadError as exc:
        raise _fail(str(exc), code=1) from None
    for package in done:
        typer.echo(f"migrated {package}")
    if not done:
        typer.echo("no task package has a schema module")


# --- assembly -----------------------------------------------------------------------------
def build_cli(settings: Settings | None = None) -> typer.Typer:
    """The ``offload`` Typer app with every task package's commands registered."""
    app = typer.Typer(
        name="offload", help="Dependable Celery background work.", no_args_is_help=True,
        add_completion=False, pretty_exceptions_enable=False,
    )
    for command in (dev, worker, beat, flower, api, status, doctor, migrate):
        app.command()(command)
    _register_plugins(app, settings)
    return app


def _register_plugins(app: typer.Typer, settings: Settings | None) -> None:
    from offload.plugins import plugin_modules

    if settings is None:
        try:
            settings = load_settings()
        except ConfigurationError:
            return  # every command reports the bad setting itself
    try:
        for package, module in plugin_modules(settings.task_packages, "cli"):
            register = getattr(module, "register", None)
            if register is not None:
                register(app)
    except (OffloadError, ImportError) as exc:
        typer.secho(f"warning: task package commands not loaded: {exc}",
                    fg=typer.colors.YELLOW, err=True)


def main() -> None:
    build_cli()(prog_name="offload")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
