"""Sessions with SurrealDB: the embedded engine of this process, or a server over WebSocket.

A session sends one RPC call (CBOR, see :mod:`offload.backends.codec`) and returns its result;
it knows nothing about retrying (that is :class:`offload.backends.engine.Store`'s job) but tells
a transient failure (:class:`Transient`: the connection dropped, timed out, was refused) from
an answer. SDK and websockets errors end here or in the store.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

from surrealdb.errors import NotAllowedError, ServerError, parse_query_error, parse_rpc_error

from offload.backends import codec
from offload.backends.config import SurrealConfig
from offload.backends.guard import StoreLock, check_not_pool_child, refuse
from offload.errors import ConfigurationError, ResultStoreError

__all__ = [
    "EmbeddedEngine",
    "EmbeddedSession",
    "StatementRejected",
    "Transient",
    "WebSocketSession",
    "is_retriable_server_error",
    "statements",
]

log = logging.getLogger("offload.backends.surrealdb")


class StatementRejected(ResultStoreError):
    """SurrealDB refused a statement (permissions, a query error): retrying will not help."""


class Transient(Exception):
    """A call failed in a way a fresh connection may fix. ``sent``: the request left us."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unwrap(response: Any, what: str) -> Any:
    if not isinstance(response, dict):
        raise ResultStoreError(f"SurrealDB sent an unexpected reply to {what}: {response!r:.200}")
    if response.get("error") is not None:
        raise parse_rpc_error(response["error"])
    return response.get("result")


def statements(result: Any) -> list[Any]:
    """The per-statement results of a ``query`` call; the first failed statement raises."""
    values = []
    for statement in result or ():
        if statement.get("status") == "ERR":
            raise parse_query_error(statement)
        values.append(statement.get("result"))
    return values


def is_retriable_server_error(exc: ServerError) -> bool:
    text = str(exc).lower()
    return "can be retried" in text or "transaction conflict" in text or (
        isinstance(exc, NotAllowedError)
        and any(word in text for word in ("expired", "session"))
    )


# --- the embedded engine ---------------------------------------------------------------------


class EmbeddedEngine:
    """The one engine of an embedded store in this process (shared by all its stores)."""

    def __init__(self, config: SurrealConfig) -> None:
        from surrealdb_embedded import SyncEmbeddedDB

        check_not_pool_child()
        self.key = config.engine_key
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._session: tuple[str, str] | None = None
        self._ids = itertools.count(1)
        self._file_lock: StoreLock | None = None
        if config.path is not None:
            self._file_lock = StoreLock(config.path)
            self._file_lock.acquire()
        try:
            self._db = SyncEmbeddedDB(config.target)
            self._db.connect()
        except Exception as exc:
            if self._file_lock is not None:
                self._file_lock.release()
            raise ResultStoreError(
                f"cannot open the embedded SurrealDB store {config.target}: {exc}"
            ) from exc

    def call(self, namespace: str, database: str, method: str, params: list[Any]) -> Any:
        if os.getpid() != self.pid:
            raise refuse(
                f"process {os.getpid()} inherited the embedded store {self.key} from process "
                f"{self.pid} through fork(); its writes would be lost"
            )
        with self._lock:
            if self._session != (namespace, database):
                self._execute("use", [namespace, database])
                self._session = (namespace, database)
            return self._execute(method, params)

    def _execute(self, method: str, params: list[Any]) -> Any:
        request = codec.encode_request(str(next(self._ids)), method, params)
        return _unwrap(codec.decode(self._db.execute(request)), method)

    def close(self) -> None:
        with self._lock:
            try:
                if os.getpid() == self.pid:
                    self._db.close()
            finally:
                if self._file_lock is not None and os.getpid() == self.pid:
                    self._file_lock.release()


class EmbeddedSession:
    """A store's view of the shared engine: its namespace and database."""

    def __init__(self, engine: EmbeddedEngine, config: SurrealConfig) -> None:
        self.engine = engine
        self.config = config

    def call(self, method: str, params: list[Any], timeout: float) -> Any:
        return self.engine.call(self.config.namespace, self.config.database, method, params)

    def close(self) -> None:  # the engine outlives its sessions
        pass


# --- a server over WebSocket -------------------------------------------------------------------


class WebSocketSession:
    """One WebSocket connection to a SurrealDB server, signed in and bound to ns/db."""

    def __init__(self, config: SurrealConfig) -> None:
        import websockets
        from websockets.sync.client import connect

        self.config = config
        self._ids = itertools.count(1)
        try:
            self._socket = connect(
                config.target,
                subprotocols=[websockets.Subprotocol("cbor")],
                max_size=None,
                open_timeout=config.timeout,
                close_timeout=1.0,
                compression=None,
            ).__enter__()  # the connection itself (websockets >= 17 wants a context manager)
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise Transient(f"cannot connect: {_describe(exc)}", sent=False) from exc
        try:
            self._sign_in()
            self.call("use", [config.namespace, config.database], config.timeout)
        except BaseException:
            self.close()
            raise

    def _sign_in(self) -> None:
        config = self.config
        if config.username is None:
            return
        base = {"user": config.username, "pass": config.password}
        levels = (
            {"NS": config.namespace, "DB": config.database, **base},  # a database user
            {"NS": config.namespace, **base},  # a namespace user
            base,  # a root user
        )
        last: Exception | None = None
        for params in levels:
            try:
                self.call("signin", [params], config.timeout)
                return
            except NotAllowedError as exc:
                last = exc
        raise ConfigurationError(
            f"SurrealDB at {config.redacted()} refused the credentials of user "
            f"{config.username!r} (surrealdb_username / surrealdb_password): {last}"
        )

    def call(self, method: str, params: list[Any], timeout: float) -> Any:
        from websockets.exceptions import WebSocketException

        request_id = str(next(self._ids))
        payload = codec.encode_request(request_id, method, params)
        try:
            self._socket.send(payload)
        except (OSError, WebSocketException) as exc:
            raise Transient(f"connection lost: {_describe(exc)}", sent=False) from exc
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                data = self._socket.recv(timeout=remaining)
            except TimeoutError as exc:
                raise Transient(f"no reply within {timeout:g}s", sent=True) from exc
            except (OSError, WebSocketException) as exc:
                raise Transient(f"connection lost: {_describe(exc)}", sent=True) from exc
            response = codec.decode(data if isinstance(data, bytes) else data.encode())
            if isinstance(response, dict) and response.get("id") == request_id:
                return _unwrap(response, method)
            # anything else (a live-query notification, a stale reply) is not ours

    def close(self) -> None:
        try:
            self._socket.close()
        except (OSError, RuntimeError) as exc:  # pragma: no cover - closing a dead socket
            log.debug("closing a SurrealDB connection failed: %r", exc)
