"""A loopback SurrealDB "server" for tests: the SDK's RPC over WebSocket, served by the embedded
engine in this process, with switches to cut and restore the connection.

No SurrealDB server can be installed where offload's tests run, yet the server path of the
result backend (``surrealdb+ws://``: connecting, signing in, reconnecting after a drop, several
processes sharing one store) must be exercised. The relay accepts WebSocket connections with
the ``cbor`` subprotocol at ``ws://127.0.0.1:<port>/rpc`` and hands every request to one
embedded engine, keeping each connection's namespace/database apart. ``signin`` is answered
by the relay itself against the credentials it was given (the embedded engine has no users).

    with SurrealRelay() as relay:             # or SurrealRelay("surrealkv:///tmp/x")
        app.conf.result_backend = relay.backend_url
        relay.cut()       # drop every connection and refuse new ones
        relay.restore()   # accept again
        relay.drop()      # drop the current connections once (a server restart)

From a shell (several worker processes sharing one store)::

    python -m offload.testing.surreal_relay --port 8765 --store mem://
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from pathlib import Path
from typing import Any, Self

__all__ = ["SurrealRelay"]


class SurrealRelay:
    """Serve an embedded SurrealDB engine over the WebSocket RPC on a loopback port."""

    def __init__(self, store: str = "mem://", *, host: str = "127.0.0.1", port: int = 0,
                 username: str | None = None, password: str | None = None) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        #: Seconds to wait before answering each request (to test timeouts).
        self.latency = 0.0
        self.connections_accepted = 0
        self._refusing = False
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._engine_session: tuple[Any, Any] | None = None
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._file_lock: Any = None
        self._ids = itertools.count(1)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SurrealRelay:
        from surrealdb_embedded import SyncEmbeddedDB
        from websockets.sync.server import serve

        if self.store.split("://", 1)[0] not in {"mem", "memory"}:
            from offload.backends.guard import StoreLock

            self._file_lock = StoreLock(Path(self.store.split("://", 1)[1]))
            self._file_lock.acquire()
        self._engine = SyncEmbeddedDB(self.store)
        self._engine.connect()
        self._server = serve(
            self._handle, self.host, self.port, subprotocols=["cbor"], max_size=None,
            compression=None, process_request=self._gate,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="surreal-relay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._close_open()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/rpc"

    @property
    def backend_url(self) -> str:
        """The Celery ``result_backend`` URL of this relay (credentials included)."""
        who = f"{self.username}:{self.password}@" if self.username else ""
        return f"surrealdb+ws://{who}{self.host}:{self.port}/rpc"

    # --- switches ----------------------------------------------------------------------------
    def cut(self) -> None:
        """Close every open connection and refuse new ones until :meth:`restore`."""
        self._refusing = True
        self._close_open()

    def restore(self) -> None:
        self._refusing = False

    def drop(self) -> None:
        """Close the open connections once; new connections are accepted."""
        self._close_open()

    def _close_open(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            connection.close(code=1012, reason="relay restart")

    # --- serving -------------------------------------------------------------------------------
    def _gate(self, connection: Any, request: Any) -> Any:
        if self._refusing:
            return connection.respond(503, "the relay is cut\n")
        return None

    def _handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._open_lock:
            self._open.add(connection)
            self.connections_accepted += 1
        session: dict[str, Any] = {"ns": None, "db": None, "authed": self.username is None}
        try:
            for message in connection:
                if self._refusing:
                    break
                reply = self._dispatch(session, message)
                if self.latency:
                    time.sleep(self.latency)
                connection.send(reply)
        except ConnectionClosed:
            pass
        finally:
            with self._open_lock:
                self._open.discard(connection)

    def _dispatch(self, session: dict[str, Any], message: bytes | str) -> bytes:
        from offload.backends import codec

        raw = message if isinstance(message, bytes) else message.encode()
        request = codec.decode(raw)
        request_id = request.get("id")
        method = str(request.get("method", "")).lower()
        params = request.get("params") or []
        if method == "signin":
            return self._signin(session, request_id, params)
        if method in {"authenticate", "invalidate", "ping"}:
            return codec.encode({"id": request_id, "result": None})
        if not session["authed"]:
            return self._error(request_id, "NotAllowed", "Not enough permissions to perform this action")
        if method == "use":
            session["ns"], session["db"] = (list(params) + [None, None])[:2]
        with self._engine_lock:
            if method != "use" and session["ns"] is not None:
                wanted = (session["ns"], session["db"])
                if self._engine_session != wanted:
                    self._engine.execute(codec.encode_request("relay", "use", list(wanted)))
                    self._engine_session = wanted
            reply = self._engine.execute(raw)
            if method == "use":
                self._engine_session = (session["ns"], session["db"])
        return reply

    def _signin(self, session: dict[str, Any], request_id: Any, params: list[Any]) -> bytes:
        from offload.backends import codec

        given = params[0] if params and isinstance(params[0], dict) else {}
        if self.username is None or (
            given.get("user") == self.username and given.get("pass") == self.password
        ):
            session["authed"] = True
            return codec.encode({"id": request_id, "result": f"relay-token-{next(self._ids)}"})
        return self._error(request_id, "NotAllowed", "There was a problem with authentication")

    @staticmethod
    def _error(request_id: Any, kind: str, message: str) -> bytes:
        from offload.backends import codec

        return codec.encode({
            "id": request_id,
            "error": {"code": -32000, "kind": kind, "message": message,
                      "details": {"kind": "Auth", "details": {"kind": "InvalidAuth"}}},
        })


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--store", default="mem://", help="mem:// or surrealkv:///abs/dir")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    relay = SurrealRelay(args.store, host=args.host, port=args.port,
                         username=args.user, password=args.password).start()
    print(f"relay serving {args.store} at {relay.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()


if __name__ == "__main__":
    main()
