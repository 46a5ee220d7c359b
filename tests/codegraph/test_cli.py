"""``offload ingest``, ``symbols`` and ``callers`` over HTTP against a live service (uvicorn in
a thread, a worker in this process), as under ``offload dev``."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from offload.cli import build_cli

from .conftest import KEYS
from .graphkit import FIXTURES


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import uvicorn
    from celery.contrib.testing.worker import start_worker

    from offload.factory import create_worker_app
    from offload.server.app import create_api
    from offload.settings import load_settings

    data = tmp_path_factory.mktemp("codegraph-cli")
    settings = load_settings(
        data_dir=data, broker_url="memory://", worker_pool="threads",
        result_backend=f"surrealdb+surrealkv://{data}/results",
        database_url=f"sqlite+aiosqlite:///{data}/offload.db",
        task_packages=["offload.apps.codegraph"], codegraph_roots=[str(FIXTURES)],
        api_keys=KEYS, progress_min_interval=0)
    celery = create_worker_app(settings=settings, name="codegraph-cli-test")
    server = uvicorn.Server(uvicorn.Config(create_api(settings, celery), host="127.0.0.1",
                                           port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    with start_worker(celery, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING"):
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", data
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    celery.close()


def run(live, *args: str):
    url, data = live
    result = CliRunner().invoke(build_cli(), [*args, "--api", url, "--key", "key-acme"],
                                env={"OFFLOAD_DATA_DIR": str(data)})
    return result


def test_ingest_follows_the_task_and_prints_a_summary(live):
    result = run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop")
    assert result.exit_code == 0, result.output
    assert "files parsed" in result.output and "nodes written" in result.output
    again = run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop", "--json")
    status = json.loads(again.output.strip().splitlines()[-1])
    assert status["state"] == "SUCCESS" and status["result"]["files_unchanged"] == 4


def test_symbols_and_callers(live):
    run(live, "ingest", str(FIXTURES / "python"), "--repo-id", "shop")
    found = json.loads(run(live, "symbols", "to_dict", "--json").output)
    assert {s["qualified_name"] for s in found} == {"shop.models.Base.to_dict",
                                                    "shop.models.Order.to_dict"}
    callers = json.loads(run(live, "callers", "shop.models.Base.to_dict", "--repo", "shop",
                             "--json").output)
    assert {c["qualified_name"] for c in callers} == {"shop.models.Base.save",
                                                      "shop.models.Order.to_dict"}
    assert run(live, "callers", "no.such.thing", "--repo", "shop").exit_code == 1


def test_a_failing_ingestion_exits_non_zero_with_the_reason(live):
    result = run(live, "ingest", "/etc")
    assert result.exit_code == 1
    assert "OFFLOAD_CODEGRAPH_ROOTS" in result.output
