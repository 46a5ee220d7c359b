"""``offload ingest``, ``symbols`` and ``callers`` over HTTP against a live service (uvicorn in
a thread, a worker in this process), as under ``offload dev``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import offload
from offload.cli import build_cli

from .conftest import embedded_stack
from .graphkit import FIXTURES

OFFLOAD_SOURCE = Path(offload.__file__).resolve().parent


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The service on a real port (uvicorn in a thread), as ``offload dev`` serves it."""
    import uvicorn

    data = tmp_path_factory.mktemp("codegraph-cli")
    with embedded_stack(data, "codegraph-cli-test",
                        codegraph_roots=[str(FIXTURES), str(OFFLOAD_SOURCE)]) as (
            settings, celery, api):
        server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=0, log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive(), "the API did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", data, settings, celery
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def run(live, *args: str):
    url, data, _settings, _celery = live
    result = CliRunner().invoke(build_cli(), [*args, "--api", url, "--key", "key-acme"],
                                env={"OFFLOAD_DATA_DIR": str(data)})
    return result


def test_ingest_follows_the_task_and_prints_a_summary(live):
    result = run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop")
    assert result.exit_code == 0, result.output
    assert "files parsed" in result.output and "nodes written" in result.output
    again = run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop", "--json")
    status = json.loads(again.stdout.strip().splitlines()[-1])
    assert status["state"] == "SUCCESS" and status["result"]["files_unchanged"] == 4


def test_symbols_and_callers(live):
    run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop")
    found = json.loads(run(live, "symbols", "to_dict", "--json").stdout)
    assert {s["qualified_name"] for s in found} == {"shop.models.Base.to_dict",
                                                    "shop.models.Order.to_dict"}
    callers = json.loads(run(live, "callers", "shop.models.Base.to_dict", "--repo", "shop",
                             "--json").stdout)
    assert {c["qualified_name"] for c in callers} == {"shop.models.Base.save",
                                                      "shop.models.Order.to_dict"}
    assert run(live, "callers", "no.such.thing", "--repo", "shop").exit_code == 1


def test_a_failing_ingestion_exits_non_zero_with_the_reason(live):
    result = run(live, "ingest", "/etc")
    assert result.exit_code == 1
    assert "OFFLOAD_CODEGRAPH_ROOTS" in result.output


def test_progress_view_shows_stage_files_and_a_waiting_task_as_queued():
    from offload.apps.codegraph.cli import _Progress

    view = _Progress(enabled=True)
    try:
        bar = view.view.tasks[0]
        # a task still in the queue has no progress of its own: PENDING shows as queued, 0 %
        view.update({"state": "PENDING", "progress": None})
        assert (bar.description, bar.completed) == ("queued", 0)
        view.update({"state": "PROGRESS", "progress": {
            "percent": 42.5, "stage": "parsing", "files_done": 5, "files_total": 10,
            "current_file": "pkg/a.py"}})
        assert (bar.description, bar.completed) == ("parsing", 42.5)
        assert (bar.fields["files"], bar.fields["current"]) == ("5/10 files", "pkg/a.py")
        view.update({"state": "SUCCESS", "progress": None, "result": {}})
        assert (bar.description, bar.completed) == ("success", 100)
    finally:
        view.close()


def test_dev_demo_ingests_offloads_own_source_then_says_how_to_query_it(live, capsys):
    """What ``make run`` (``offload dev``) shows a new user: its start hook ingests offload's
    own package as a repository of the demo tenant, then prints queries that work."""
    from offload.apps.codegraph.cli import on_dev_start

    url, _data, settings, celery = live
    dev = SimpleNamespace(settings=settings, celery_app=celery, api_url=url,
                          api_key="key-acme", tenant="acme")
    asyncio.run(on_dev_start(dev))
    assert "offload's own code is indexed" in capsys.readouterr().err
    found = json.loads(run(live, "symbols", "ingest_repository", "--repo", "offload",
                           "--json").stdout)
    assert "offload.apps.codegraph.ingest.ingest_repository" in {
        s["qualified_name"] for s in found}
    callers = json.loads(run(live, "callers", "offload.apps.codegraph.store.scope_tenant",
                             "--repo", "offload", "--json").stdout)
    assert callers
