"""The task in a production-shaped deployment: a prefork worker process (Redis broker and
results, PostgreSQL), whose child parses in its own process pool, reports progress the
client can read, and turns a soft time limit into a clean failure that writes nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from offload.apps.codegraph import tasks
from offload.db import create_engine
from offload.factory import create_worker_app
from offload.settings import load_settings

from .conftest import stored_graph
from .test_pool import children, descendants, wait_until_gone
from .test_store import synthetic_repo

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, redis_url, codegraph_pg_url):
    root = tmp_path_factory.mktemp("prefork")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    offload = {
        "broker_url": redis_url, "result_backend": redis_url, "database_url": codegraph_pg_url,
        "task_packages": "[]", "task_modules": '["offload.apps.codegraph.tasks"]',
        "codegraph_roots": f'["{root}"]', "codegraph_pool_min_bytes": "0",
        "codegraph_parse_workers": "2", "progress_min_interval": "0.05",
        "data_dir": str(root / "data"), "log_format": "json",
    }
    env.update({f"OFFLOAD_{k.upper()}": v for k, v in offload.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    log = root / "worker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "codegraph.worker_app:app", "worker",
             "-P", "prefork", "-c", "1", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "INFO", "-n", f"cg-{uuid.uuid4().hex[:6]}@%h"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(TESTS))
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.1)
        settings = load_settings(
            broker_url=redis_url, result_backend=redis_url, database_url=codegraph_pg_url,
            task_packages=[], task_modules=["offload.apps.codegraph.tasks"],
            data_dir=root / "client")
        app = create_worker_app(settings=settings, name="codegraph-client")
        yield app, settings, root, proc.pid
        app.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def graph(url: str, tenant: str, repo: str):
    async def read():
        engine = create_engine(url)
        try:
            return await stored_graph(engine, tenant, repo)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def submit(app, root: Path, name: str, files: int, **options):
    """Queue the ingestion of a new synthetic repository of ``files`` files, for a tenant of
    its own; return (AsyncResult, tenant)."""
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    result = tasks.parse_and_index_repository.on_app(app).apply_async(
        kwargs={"tenant_id": tenant, "repo_id": name,
                "repo_path": str(synthetic_repo(root / name, files))}, **options)
    return result, tenant


def test_prefork_child_parses_in_a_pool_and_reports_progress(deployment):
    app, settings, root, _worker = deployment
    result, tenant = submit(app, root, "big", 400)
    seen = []
    while not result.ready():
        state = result.state
        if state == "PROGRESS":
            seen.append(dict(result.info))
        assert state != "RETRY", result.info
        time.sleep(0.02)
    value = result.get(timeout=5)
    assert value["files_parsed"] == 400 and value["rls_enforced"] is False
    assert value["parse_mode"] == "fork"  # a prefork child forks its pool
    stages = {p["stage"] for p in seen}
    assert stages & {"parsing", "storing"}, seen[:3]
    parsing = [p for p in seen if p["stage"] == "parsing"]
    for meta in parsing:
        assert meta["files_total"] == 400 and 0 <= meta["files_done"] <= 400
        assert 30 <= meta["percent"] <= 80
    nodes, _edges = graph(settings.database, tenant, "big")
    assert len(nodes) == value["nodes_created"]


def test_soft_time_limit_fails_cleanly_and_writes_nothing(deployment):
    app, settings, root, worker = deployment
    result, tenant = submit(app, root, "slow", 2500, soft_time_limit=0.2, time_limit=30)
    with pytest.raises(SoftTimeLimitExceeded) as raised:
        result.get(timeout=60)
    assert result.state == "FAILURE" and "soft time limit" in str(raised.value)
    assert graph(settings.database, tenant, "slow") == (set(), set())
    # the child's parse pool is gone with the task (only the child itself is left)
    assert wait_until_gone(descendants(worker) - children(worker)) == set()
    # the worker is still healthy: the next task runs
    again, _tenant = submit(app, root, "small", 3)
    assert again.get(timeout=60)["files_parsed"] == 3


def test_a_killed_worker_process_takes_its_parse_pool_with_it(deployment):
    app, settings, root, worker = deployment
    result, tenant = submit(app, root, "killed", 1500)
    # Given the prefork child parsing in its pool
    deadline = time.monotonic() + 60
    while True:
        (child,) = children(worker)
        pool = descendants(child)
        if len(pool) >= 2:
            break
        assert time.monotonic() < deadline and not result.ready(), result.state
        time.sleep(0.01)
    # When the child is killed the way a hard time limit ends it
    os.kill(child, signal.SIGKILL)
    # Then its pool workers exit at once, and the task (acks_late, reject_on_worker_lost)
    # runs again in the new child, from the start: the graph is whole
    left = wait_until_gone(pool)
    for pid in left:  # orphans of a failing run
        os.kill(pid, signal.SIGKILL)
    assert left == set()
    value = result.get(timeout=60)
    assert value["files_parsed"] == 1500
    nodes, _edges = graph(settings.database, tenant, "killed")
    assert len(nodes) == value["nodes_created"]


def test_cli_talks_to_broker_and_database_directly(deployment, redis_url, codegraph_pg_url):
    import json

    from typer.testing import CliRunner

    from offload.cli import build_cli

    _app, _settings, root, _worker = deployment
    repo = synthetic_repo(root / "cli", 5)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    env = {"OFFLOAD_BROKER_URL": redis_url, "OFFLOAD_RESULT_BACKEND": redis_url,
           "OFFLOAD_DATABASE_URL": codegraph_pg_url, "OFFLOAD_TASK_PACKAGES": "[]",
           "OFFLOAD_DATA_DIR": str(root / "cli-data")}
    cli = build_cli()
    done = CliRunner().invoke(cli, ["ingest", str(repo), "--tenant", tenant, "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.strip().splitlines()[-1])["result"]["files_parsed"] == 5
    found = CliRunner().invoke(cli, ["symbols", "C3", "--tenant", tenant, "--json"], env=env)
    assert [s["qualified_name"] for s in json.loads(found.stdout)] == ["mod003.C3", "mod003.C3.m"]
    callers = CliRunner().invoke(cli, ["callers", "mod003.f3", "--tenant", tenant, "--json"],
                                 env=env)
    assert {c["qualified_name"] for c in json.loads(callers.stdout)} == {"mod002.f2",
                                                                        "mod003.C3.m"}
