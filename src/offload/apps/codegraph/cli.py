"""``offload ingest``, ``offload symbols``, ``offload callers`` — and the ``offload dev`` demo.

Two ways to reach the service, as ``offload status`` does:

* over HTTP (``--api URL``, the default when the broker or result store is embedded, i.e.
  under ``offload dev``): the API key (``--key``, default: the dev key) names the tenant;
* directly (a shared broker and result store, e.g. Redis, and the database in settings):
  ``--tenant`` names the tenant (default ``demo``).

``ingest`` follows the task with a live progress bar (stage, files, rate, ETA) and ends with
a summary table; exit status 1 when the task fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Annotated, Any, Self

import typer

from offload.settings import Settings, load_settings

TASK_NAME = "codegraph.parse_and_index_repository"
DEMO_TENANT = "demo"

ApiOption = Annotated[str | None, typer.Option(
    "--api", help="Use this offload API (default when the broker is in-process).")]
KeyOption = Annotated[str | None, typer.Option("--key", help="API key (default: the dev key).")]
TenantOption = Annotated[str | None, typer.Option(
    "--tenant", help="Tenant, when talking to the broker and database directly.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only.")]


def register(app: typer.Typer) -> None:
    """Add codegraph's commands to the ``offload`` CLI (the plug-in convention)."""
    app.command("ingest")(ingest)
    app.command("symbols")(symbols)
    app.command("callers")(callers)


# --- plumbing --------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    from offload.errors import ConfigurationError

    try:
        return load_settings()
    except ConfigurationError as exc:
        raise _fail(str(exc), code=2) from None


def _api_url(settings: Settings, api: str | None) -> str | None:
    if api:
        return api.rstrip("/")
    if settings.broker_in_process or settings.results_embedded:
        return f"http://{settings.api_host}:{settings.api_port}"
    return None


class _Http:
    """A small client of the offload API with readable failures."""

    def __init__(self, url: str, key: str) -> None:
        import httpx

        self.url = url
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                   timeout=httpx.Timeout(30.0, read=None))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def request(self, method: str, path: str, missing_ok: bool = False, **kwargs: Any) -> Any:
        """The JSON answer; None for a 404 when ``missing_ok``; a clear exit otherwise."""
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _fail(f"cannot reach the offload API at {self.url}: {exc} (is `offload dev` "
                        "running? pass --api URL otherwise)") from None
        if response.status_code == 401:
            raise _fail(f"{self.url} refused the API key (pass --key)")
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            detail = response.json().get("detail") if response.headers.get(
                "content-type", "").startswith("application/json") else response.text
            if isinstance(detail, dict):
                detail = detail.get("message", detail)
            raise _fail(f"{response.status_code}: {detail}")
        return response.json()

    def events(self, task_id: str) -> Any:
        """Status dicts from the task's server-sent events, until it is done."""
        import httpx

        try:
            with self.client.stream("GET", f"/tasks/{task_id}/events") as response:
                if response.status_code >= 400:
                    raise _fail(f"{response.status_code} following task {task_id}")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        data = json.loads(line[6:])
                        if "state" in data:
                            yield data
        except httpx.TransportError as exc:
            raise _fail(f"lost the offload API at {self.url}: {exc}") from None


def _direct_events(settings: Settings, task_id: str) -> Any:
    """Status dicts of the task from the shared result store, until it is done (read by a
    thread running the async follower; the store's app is closed when this ends)."""
    import queue
    import threading

    from offload.factory import create_monitor_app
    from offload.status import task_events

    app = create_monitor_app(settings=settings)
    statuses: queue.Queue = queue.Queue()

    def follow() -> None:
        async def run() -> None:
            async for event in task_events(app.AsyncResult(task_id)):
                if "state" in event.data:
                    statuses.put(event.data)

        try:
            asyncio.run(run())
        except Exception as exc:  # noqa: BLE001 - reported by the reader
            statuses.put(exc)
        finally:
            statuses.put(None)

    threading.Thread(target=follow, name="codegraph-follow", daemon=True).start()
    try:
        while (status := statuses.get()) is not None:
            if isinstance(status, Exception):
                raise _fail(f"lost track of task {task_id}: {type(status).__name__}: {status}")
            yield status
    finally:
        app.close()


class _Progress:
    """The live view of an ingestion: stage, bar, files done/total, rate, ETA, file."""

    def __init__(self, enabled: bool) -> None:
        self.view: Any = None
        self.stage_started: dict[str, float] = {}
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.view = Progress(
            TextColumn("{task.description:<10}"), BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
            TimeElapsedColumn(), TextColumn("[dim]{task.fields[current]}"),
            console=Console(stderr=True), transient=False)
        self.view.start()
        self.bar = self.view.add_task("queued", total=100, files="", rate="", eta="",
                                      current="")

    def update(self, status: dict[str, Any]) -> None:
        if self.view is None:
            return
        meta = status.get("progress") or {}
        stage = meta.get("stage") or ("queued" if status["state"] == "PENDING"
                                      else status["state"].lower())
        now = time.monotonic()
        started = self.stage_started.setdefault(stage, now)
        done, total = meta.get("files_done"), meta.get("files_total")
        files = rate = eta = ""
        if total:
            files = f"{done}/{total} files"
            elapsed = now - started
            if done and elapsed > 0.2:
                per_second = done / elapsed
                rate = f"{per_second:,.0f} files/s"
                eta = f"ETA {max(0.0, (total - done) / per_second):.0f}s"
        current = meta.get("current_file") or ""
        percent = 100.0 if status["state"] == "SUCCESS" else float(meta.get("percent") or 0)
        if status["state"] in ("SUCCESS", "FAILURE"):
            stage, eta, current = status["state"].lower(), "", ""
        self.view.update(self.bar, completed=percent, description=stage,
                         files=files, rate=rate, eta=eta, current=current[-40:])

    def close(self) -> None:
        if self.view is not None:
            self.view.stop()


def _summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.get('repo_id')} ({result.get('root', '')})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    duration = result.get("duration_s") or 0
    lines = result.get("lines_parsed") or 0
    rows = [
        ("files parsed", result.get("files_parsed")),
        ("files unchanged", result.get("files_unchanged")),
        ("files deleted", result.get("files_deleted")),
        ("files skipped", result.get("files_skipped")),
        ("files failed", result.get("files_failed")),
        ("nodes written", result.get("nodes_created")),
        ("edges written", result.get("edges_created")),
        ("lines parsed", lines),
        ("duration", f"{duration:.2f} s"),
    ]
    if lines and duration:
        rows.append(("rate", f"{lines / duration:,.0f} lines/s"))
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    skipped = result.get("skipped") or {}
    if skipped:
        table.add_row("skipped by reason", ", ".join(f"{k} {v}" for k, v in sorted(
            skipped.items())))
    for failure in result.get("failures") or []:
        table.add_row("[red]not parsed", f"{failure['path']}: {failure['reason']}")
    Console().print(table)


# --- commands --------------------------------------------------------------------------------


def ingest(
    path: Annotated[Path, typer.Argument(help="The repository's directory.")],
    repo_id: Annotated[str | None, typer.Option(
        "--repo-id", help="Repository id (default: the directory's name).")] = None,
    api: ApiOption = None,
    key: KeyOption = None,
    tenant: TenantOption = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Queue and return.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Parse a repository into the code graph: queue the task, follow it, summarize."""
    from offload.apps.codegraph.ingest import default_repo_id

    settings = _settings()
    repo_path = str(path.expanduser().resolve())
    repo_id = repo_id or default_repo_id(repo_path)
    with _client(settings, _api_url(settings, api), key) as http:
        if http is not None:
            accepted = http.request("POST", "/repositories/parse",
                                    json={"repo_path": repo_path, "repo_id": repo_id})
            task_id = accepted["task_id"]
            events = http.events(task_id)
        else:
            task_id = _send_direct(settings, tenant or DEMO_TENANT, repo_id, repo_path)
            events = _direct_events(settings, task_id)
        if no_wait:
            typer.echo(json.dumps({"task_id": task_id, "repo_id": repo_id}) if as_json
                       else task_id)
            return
        progress = _Progress(enabled=not as_json)
        last: dict[str, Any] = {}
        try:
            for status in events:
                last = status
                progress.update(status)
        finally:
            progress.close()
    if as_json:
        typer.echo(json.dumps(last))
    if last.get("state") != "SUCCESS":
        error = last.get("error") or {}
        raise _fail(f"ingestion failed: {error.get('type', last.get('state'))}: "
                    f"{error.get('message', '')}")
    if not as_json:
        _summary(last.get("result") or {})


def _send_direct(settings: Settings, tenant: str, repo_id: str, repo_path: str) -> str:
    """Queue the task on the shared broker; return its id (carrying the tenant's hash)."""
    from offload.factory import create_monitor_app
    from offload.integrations.fastapi import tenant_task_id

    app = create_monitor_app(settings=settings)
    try:
        task_id = tenant_task_id(tenant)
        app.send_task(TASK_NAME, kwargs={"tenant_id": tenant, "repo_id": repo_id,
                                         "repo_path": repo_path},
                      task_id=task_id, queue="default")
    finally:
        app.close()
    return task_id


def _repositories(http: _Http | None, settings: Settings, tenant: str,
                  repo: str | None) -> list[str]:
    if repo:
        return [repo]
    if http is not None:
        return [r["repo_id"] for r in http.request("GET", "/repositories")]
    from offload.apps.codegraph import queries

    rows = _run_queries(settings, lambda conn: queries.list_repositories(conn, tenant))
    return [r["repo_id"] for r in rows if r["generation"]]


def _run_queries(settings: Settings, read: Any) -> Any:
    from offload.db import create_engine

    async def run() -> Any:
        engine = create_engine(settings.database)
        try:
            async with engine.connect() as conn:
                return await read(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def symbols(
    query: Annotated[str, typer.Argument(help="Part of a name or qualified name.")],
    repo: Annotated[str | None, typer.Option("--repo", help="Only this repository.")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    api: ApiOption = None,
    key: KeyOption = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find classes, functions and methods by name."""
    from offload.apps.codegraph import queries

    params: dict[str, Any] = {"q": query, "limit": limit, **({"kind": kind} if kind else {})}
    found = _each_repository(
        api, key, tenant, repo,
        lambda http, r: http.request("GET", f"/repositories/{r}/symbols", params=params)[
            "symbols"],
        lambda conn, t, r: queries.search_symbols(conn, t, r, query, kind, limit))
    _print_rows(found[:limit], as_json, ["qualified_name", "kind", "location", "repo_id"],
                f"symbols matching {query!r}")


def callers(
    qualified_name: Annotated[str, typer.Argument(help="e.g. pkg.mod.Class.method")],
    repo: Annotated[str | None, typer.Option("--repo", help="Only this repository.")] = None,
    api: ApiOption = None,
    key: KeyOption = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who calls a function or method (also an external one, e.g. os.path.join)."""
    from urllib.parse import quote

    from offload.apps.codegraph import queries

    route = f"symbols/{quote(qualified_name, safe='/:')}/callers"
    found = _each_repository(
        api, key, tenant, repo,
        lambda http, r: (http.request("GET", f"/repositories/{r}/{route}", missing_ok=True)
                         or {}).get("callers"),
        lambda conn, t, r: queries.callers(conn, t, r, qualified_name))
    _print_rows(found, as_json, ["qualified_name", "kind", "location", "count", "repo_id"],
                f"callers of {qualified_name}")
    if not found and not as_json:
        raise typer.Exit(1)


def _each_repository(api: str | None, key: str | None, tenant: str | None, repo: str | None,
                     over_http: Any, direct: Any) -> list[dict[str, Any]]:
    """Rows about each of the tenant's repositories (only ``repo`` if given), with their
    ``repo_id``: ``over_http(http, repo_id)`` through the API when one is in use, else
    ``await direct(conn, tenant, repo_id)`` on the database (None: nothing there)."""
    settings = _settings()
    url = _api_url(settings, api)
    tenant = tenant or DEMO_TENANT
    found: list[dict[str, Any]] = []
    with _client(settings, url, key) as http:
        for repo_id in _repositories(http, settings, tenant, repo):
            if http is not None:
                rows = over_http(http, repo_id)
            else:
                rows = _run_queries(settings, lambda conn, r=repo_id: direct(conn, tenant, r))
            found += [{"repo_id": repo_id, **row} for row in rows or ()]
    return found


def _client(settings: Settings, url: str | None, key: str | None) -> Any:
    if url is None:
        return contextlib.nullcontext()
    return _Http(url, key or settings.dev_api_key.get_secret_value())


def _print_rows(rows: list[dict[str, Any]], as_json: bool, columns: list[str],
                title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} ({len(rows)})")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        location = row.get("path") or ""
        if row.get("start_line"):
            location += f":{row['start_line']}-{row['end_line']}"
        values = {**row, "location": location}
        table.add_row(*(str(values.get(c, "")) for c in columns))
    Console().print(table)


# --- offload dev -------------------------------------------------------------------------------


async def on_dev_start(dev: Any) -> None:
    """``offload dev``: ingest offload's own source tree as the demo tenant's repository
    ``offload``, logging progress while the service starts, then print how to query it."""
    import offload
    from offload.apps.codegraph.tasks import parse_and_index_repository
    from offload.integrations.fastapi import tenant_task_id
    from offload.logs import get_logger
    from offload.status import task_events

    log = get_logger("offload.codegraph")
    source = Path(offload.__file__).resolve().parent
    roots = [Path(root).resolve() for root in dev.settings.codegraph_roots]
    if not any(source == root or source.is_relative_to(root) for root in roots):
        log.info("codegraph demo skipped", reason="offload's source is outside "
                 "OFFLOAD_CODEGRAPH_ROOTS", source=str(source))
        return
    result = parse_and_index_repository.on_app(dev.celery_app).apply_async(
        kwargs={"tenant_id": dev.tenant, "repo_id": "offload", "repo_path": str(source)},
        task_id=tenant_task_id(dev.tenant))
    log.info("codegraph demo: ingesting offload's source", task_id=result.id,
             path=str(source))
    last_logged = 0.0
    async for event in task_events(result, interval=0.2):
        status = event.data
        meta = status.get("progress") or {}
        now = time.monotonic()
        if event.event == "progress" and meta and now - last_logged >= 1.0:
            last_logged = now
            log.info("codegraph demo", stage=meta.get("stage"),
                     percent=round(meta.get("percent", 0)),
                     files=f"{meta.get('files_done', '-')}/{meta.get('files_total', '-')}")
    if status.get("state") != "SUCCESS":
        log.warning("codegraph demo failed", error=status.get("error"))
        return
    done = status["result"]
    log.info("codegraph demo ready", files=done["files_parsed"] + done["files_unchanged"],
             nodes=done["nodes_created"], edges=done["edges_created"],
             seconds=done["duration_s"])
    key = dev.api_key
    typer.echo(
        "\ncodegraph: offload's own code is indexed for the demo tenant. Try:\n"
        f"  curl -H 'Authorization: Bearer {key}' "
        f"'{dev.api_url}/repositories/offload/symbols?q=ingest'\n"
        f"  curl -H 'Authorization: Bearer {key}' "
        f"'{dev.api_url}/repositories/offload/symbols/"
        "offload.apps.codegraph.ingest.ingest_repository/callers'\n"
        "  offload symbols ingest_repository    offload callers "
        "offload.apps.codegraph.store.scope_tenant\n", err=True)
