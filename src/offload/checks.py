"""Reachability checks of the configured services: broker, result store, database.

Used by ``GET /health`` and ``offload doctor``. Each check runs in its own daemon thread (or on
the event loop, for the database) under a deadline, so a service that hangs makes the check
fail after ``timeout`` seconds instead of hanging the caller.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from celery import Celery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from offload.settings import redact_url, url_scheme

__all__ = ["Check", "check_services"]


@dataclass(frozen=True)
class Check:
    name: str  #: broker, results or database
    target: str  #: the URL checked, password removed
    ok: bool
    detail: str  #: what was found, or why it is unreachable
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text_}" if text_ else type(exc).__name__


def _probe_broker(app: Celery) -> str:
    if url_scheme(app.conf.broker_url or "") == "memory":
        return "in-process broker (memory://)"
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        conn.default_channel  # noqa: B018 - opening a channel talks to the server
        return f"connected ({conn.transport_cls})"


def _probe_results(app: Celery) -> str:
    backend = app.backend
    kind = type(backend).__name__
    if kind == "DisabledBackend":
        return "results are disabled"
    client = getattr(backend, "client", None)
    if kind == "RedisBackend" and client is not None:
        client.ping()
    else:
        backend.get_task_meta("offload-health-probe")
    return f"reachable ({kind})"


async def _in_daemon_thread(func: Callable[[], str]) -> str:
    """Run ``func`` in a daemon thread: a hung call never blocks the loop or interpreter exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(result: str | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or "")

    def run() -> None:
        try:
            outcome: tuple[str | None, BaseException | None] = (func(), None)
        except BaseException as exc:  # noqa: BLE001 - reported as the check's detail
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop is gone: nobody waits for this answer any more

    threading.Thread(target=run, name="offload-check", daemon=True).start()
    return await future


async def _timed(name: str, target: str, probe: Any, timeout: float) -> Check:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe, timeout)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - the point is to report it
        ok, detail = False, _describe(exc)
    return Check(name, redact_url(target), ok, detail, round(time.perf_counter() - started, 3))


async def _probe_database(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return f"connected ({engine.dialect.name})"


async def check_services(
    app: Celery, engine: AsyncEngine, database_url: str, timeout: float = 3.0
) -> list[Check]:
    """Check broker, result store and database concurrently; each within ``timeout`` s."""
    results_url = str(app.conf.result_backend or "")
    return list(
        await asyncio.gather(
            _timed("broker", app.conf.broker_url or "", _in_daemon_thread(
                lambda: _probe_broker(app)), timeout),
            _timed("results", results_url, _in_daemon_thread(lambda: _probe_results(app)),
                   timeout),
            _timed("database", database_url, _probe_database(engine), timeout),
        )
    )
