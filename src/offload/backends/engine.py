"""Connections to SurrealDB: one per process, shared by every backend instance, thread-safe.

Celery keeps one backend instance *per thread* (``app.backend`` is thread-local), so a naive
embedded backend would give every worker thread a private database. :func:`open_store` returns
the process-wide :class:`Store` for a configuration instead; stores naming the same embedded
directory (or ``mem://``) share one engine.

A :class:`Store` runs SurrealQL with bound parameters. With a server it keeps a small pool of
WebSocket connections; a call whose connection dropped is retried on a fresh one with bounded
exponential backoff, and when the retries are spent it raises
:class:`~offload.errors.ResultStoreUnavailable` naming the server and the last error. The
embedded engine runs in this process and is serialised by a lock (it holds the GIL anyway).

Foreign errors (websockets, the SDK, the engine) end here: callers see offload errors only.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from surrealdb.errors import NotAllowedError, ServerError

from offload.backends.config import SurrealConfig
from offload.backends.sessions import (
    EmbeddedEngine,
    EmbeddedSession,
    StatementRejected,
    Transient,
    WebSocketSession,
    is_retriable_server_error,
    statements,
)
from offload.errors import ResultStoreError, ResultStoreUnavailable

__all__ = ["StatementRejected", "Store", "close_all", "open_store"]

log = logging.getLogger("offload.backends.surrealdb")

_RETRY_CAP = 5.0  # seconds: the longest single wait between two attempts


# --- the store -----------------------------------------------------------------------------------


class _SharedSession:
    """The embedded engine: every thread uses the same session; the engine serialises calls."""

    def __init__(self, session: EmbeddedSession) -> None:
        self._session = session

    def acquire(self) -> EmbeddedSession:
        return self._session

    def release(self, session: Any) -> None:
        pass

    def discard(self, session: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _ConnectionPool:
    """Up to ``size`` server connections, opened on demand and reused; a dead one is dropped."""

    def __init__(self, connect: Callable[[], Any], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Any] = []
        self._open = 0
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self) -> Any:
        with self._cond:
            while True:
                if self._closed:
                    raise ResultStoreError("the SurrealDB store is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    break
                self._cond.wait()
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def release(self, session: Any) -> None:
        with self._cond:
            if self._closed:
                self._open -= 1
                session.close()
            else:
                self._idle.append(session)
            self._cond.notify()

    def discard(self, session: Any) -> None:
        session.close()
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for session in idle:
            session.close()

    def abandon(self) -> None:
        """After fork(): the sockets belong to the parent; drop them without closing."""
        with self._cond:
            self._idle.clear()
            self._open = 0


class Store:
    """Thread-safe SurrealQL execution against one namespace/database, reconnecting as needed."""

    def __init__(self, config: SurrealConfig, pool: _SharedSession | _ConnectionPool) -> None:
        self.config = config
        self.pid = os.getpid()
        self._pool = pool
        #: Set once the backend's tables and indexes are known to exist.
        self.schema_ready = False

    def query(self, sql: str, params: dict[str, Any] | None = None, *,
              idempotent: bool = True) -> list[Any]:
        """Run ``sql`` (one or more statements) with ``params`` bound; one result per statement.

        ``idempotent=False`` means the statement must not run twice: if a connection drops
        after the request was sent, the call fails instead of being retried.
        """
        return statements(self.call("query", [sql, params or {}], idempotent=idempotent))

    def call(self, method: str, params: list[Any], *, idempotent: bool = True) -> Any:
        """One RPC call, retried on a fresh connection (bounded, with backoff) when one drops."""
        config = self.config
        attempt = 0
        started = time.monotonic()
        while True:
            session = None
            try:
                session = self._pool.acquire()
                result = session.call(method, params, config.timeout)
            except Transient as exc:
                if session is not None:
                    self._pool.discard(session)
                attempt += 1
                if exc.sent and not idempotent:
                    raise ResultStoreUnavailable(
                        f"SurrealDB at {config.redacted()}: the connection dropped while a "
                        f"non-repeatable statement was in flight ({exc}); not retried"
                    ) from exc
                if attempt > config.max_retries:
                    raise ResultStoreUnavailable(
                        f"SurrealDB at {config.redacted()} is unreachable: gave up after "
                        f"{attempt} attempts in {time.monotonic() - started:.1f}s; "
                        f"last error: {exc}"
                    ) from exc
                self._backoff(attempt, exc)
                continue
            except ServerError as exc:
                retriable = is_retriable_server_error(exc) and attempt < config.max_retries
                if session is None:
                    pass  # failed while connecting: nothing to give back
                elif retriable and isinstance(exc, NotAllowedError):
                    self._pool.discard(session)  # an expired session: sign in afresh
                else:
                    self._pool.release(session)
                if retriable:
                    attempt += 1
                    self._backoff(attempt, exc)
                    continue
                raise StatementRejected(
                    f"SurrealDB at {config.redacted()} rejected {method}: {exc}"
                ) from exc
            except BaseException:
                if session is not None:
                    self._pool.discard(session)
                raise
            self._pool.release(session)
            return result

    def close(self) -> None:
        self._pool.close()

    def _backoff(self, attempt: int, exc: Exception) -> None:
        delay = min(_RETRY_CAP, self.config.retry_backoff * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter: reconnecting workers do not stampede
        log.warning(
            "SurrealDB at %s: %s; retrying in %.2fs (attempt %d of %d)",
            self.config.redacted(), exc, delay, attempt, self.config.max_retries,
        )
        time.sleep(delay)


# --- the per-process registry ----------------------------------------------------------------

_registry_lock = threading.Lock()
_engines: dict[str, EmbeddedEngine] = {}
_stores: dict[tuple[Any, ...], Store] = {}
_registry_pid = os.getpid()


def open_store(config: SurrealConfig) -> Store:
    """The process-wide store for ``config``: created on first use, then shared.

    After a fork the child starts a registry of its own: server connections are opened anew,
    and an embedded engine inherited from the parent stays refused (EmbeddedStoreLocked).
    """
    global _registry_pid
    with _registry_lock:
        if _registry_pid != os.getpid():
            for store in _stores.values():
                if isinstance(store._pool, _ConnectionPool):
                    store._pool.abandon()
            _stores.clear()
            _registry_pid = os.getpid()
        store = _stores.get(config.store_key)
        if store is None:
            store = _new_store(config)
            _stores[config.store_key] = store
        return store


def _new_store(config: SurrealConfig) -> Store:
    if config.embedded:
        engine = _engines.get(config.engine_key)
        if engine is None:
            engine = EmbeddedEngine(config)
            _engines[config.engine_key] = engine
        return Store(config, _SharedSession(EmbeddedSession(engine, config)))
    if config.scheme == "ws" and config.username and not _loopback(config.host):
        log.warning(
            "SurrealDB at %s: credentials travel unencrypted over ws://; use wss://",
            config.redacted(),
        )
    return Store(config, _ConnectionPool(lambda: WebSocketSession(config), config.pool_size))


def _loopback(host: str | None) -> bool:
    return host in {"127.0.0.1", "localhost", "::1"}


def close_all() -> None:
    """Close every store and engine of this process (tests, and clean shutdown)."""
    with _registry_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        for key, engine in list(_engines.items()):
            if engine.pid == os.getpid():
                engine.close()
                del _engines[key]
