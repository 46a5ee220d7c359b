"""A small PostgREST-compatible receiver for tests, demos and the benchmark.

It answers ``POST /rest/v1/<table>`` like PostgREST/Supabase does for an insert with
``Prefer: resolution=ignore-duplicates`` (rows keyed by ``id``; 201 Created), checks the
``apikey`` header, and can be told to fail: ``sink.fail_with = 503`` (or any status) makes every
request fail until it is set back to ``None``. Runs in a background thread on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalPostgrest:
    def __init__(self, api_key: str | None = "test-key") -> None:
        self.api_key = api_key
        self.fail_with: int | None = None
        self.tables: dict[str, dict[Any, dict[str, Any]]] = {}
        self.requests = 0
        self.received_rows = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the sink first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def rows(self, table: str) -> dict[Any, dict[str, Any]]:
        with self._lock:
            return dict(self.tables.get(table, {}))

    def start(self) -> LocalPostgrest:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # keep test output quiet
                pass

            def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                if data:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with sink._lock:
                    sink.requests += 1
                    failing = sink.fail_with
                if failing is not None:
                    return self._answer(failing, {"message": "failing on demand"})
                if sink.api_key and self.headers.get("apikey") != sink.api_key:
                    return self._answer(401, {"message": "Invalid API key"})
                prefix = "/rest/v1/"
                if not self.path.startswith(prefix):
                    return self._answer(404, {"message": "not found"})
                table = self.path[len(prefix):].split("?", 1)[0]
                try:
                    rows = json.loads(body)
                except ValueError:
                    return self._answer(400, {"message": "invalid JSON"})
                rows = rows if isinstance(rows, list) else [rows]
                with sink._lock:
                    stored = sink.tables.setdefault(table, {})
                    for row in rows:
                        stored.setdefault(row["id"], row)  # ignore-duplicates
                    sink.received_rows += len(rows)
                self._answer(201)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
