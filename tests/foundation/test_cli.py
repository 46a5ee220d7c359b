"""The operator commands: doctor, migrate, status, and task packages' own commands."""

from __future__ import annotations

import json
import sqlite3
import uuid

from offload.factory import create_worker_app

from .conftest import run_offload


def test_doctor_all_reachable(subprocess_env, redis_url):
    env = subprocess_env(broker_url=redis_url, result_backend=redis_url, task_packages="[]")
    out = run_offload("doctor", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all services reachable" in out.stdout
    for name in ("broker", "results", "database"):
        assert f"ok   {name}" in out.stdout


def test_doctor_names_the_unreachable_service_and_why(subprocess_env, redis_url):
    # Given a result store and a database nobody listens on (port 1), with passwords
    env = subprocess_env(broker_url=redis_url, result_backend="redis://:pw@127.0.0.1:1/0",
                         database_url="postgresql+asyncpg://app:dbpw@127.0.0.1:1/app",
                         task_packages="[]")
    # When the doctor runs
    out = run_offload("doctor", "--timeout", "3", env=env)
    # Then it fails, says which services and why, and shows no password
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert any(line.startswith("ok") and " broker " in line for line in lines), out.stdout
    for name in ("results", "database"):
        line = next(i for i, text in enumerate(lines) if text.startswith(f"FAIL {name}"))
        assert "127.0.0.1:1" in lines[line], out.stdout
        assert "refused" in lines[line + 1].lower(), out.stdout  # the why
    assert "unreachable: results, database" in out.stderr
    assert ":pw@" not in out.stdout and "dbpw" not in out.stdout + out.stderr


def test_migrate_runs_each_package_schema(subprocess_env, tmp_path):
    env = subprocess_env(task_packages='["fdn_demo"]')
    out = run_offload("migrate", env=env)
    assert out.returncode == 0, out.stderr
    assert "migrated fdn_demo" in out.stdout
    db = tmp_path / "offload-data" / "offload.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM fdn_marker").fetchall() == [(1,)]


def test_task_package_commands_are_registered(subprocess_env):
    env = subprocess_env(task_packages='["fdn_demo"]')
    out = run_offload("fdn-hello", "--name", "offload", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello offload"
    assert "fdn-hello" in run_offload("--help", env=env).stdout


def test_status_reads_the_result_store(subprocess_env, redis_settings, redis_url):
    # Given results stored by a worker app
    app = create_worker_app(settings=redis_settings())
    done, failed = str(uuid.uuid4()), str(uuid.uuid4())
    app.backend.store_result(done, {"rows": 3}, "SUCCESS")
    app.backend.store_result(failed, ValueError("bad input"), "FAILURE")
    env = subprocess_env(broker_url=redis_url, result_backend=redis_url, task_packages="[]")
    # When offload status reads them
    ok = run_offload("status", done, "--json", env=env)
    watched = run_offload("status", done, "--json", "--watch", env=env)
    bad = run_offload("status", failed, env=env)
    # Then the JSON has the contract's shape, and a failure exits 1 with its error
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"task_id": done, "state": "SUCCESS", "progress": None,
                                     "result": {"rows": 3}, "error": None}
    assert json.loads(watched.stdout) == json.loads(ok.stdout)
    assert bad.returncode == 1
    assert "FAILURE" in bad.stdout and "ValueError: bad input" in bad.stdout


def test_status_says_when_the_result_store_does_not_answer(subprocess_env, redis_url):
    env = subprocess_env(broker_url=redis_url, result_backend="redis://:pw@127.0.0.1:1/0",
                         task_packages="[]")
    out = run_offload("status", str(uuid.uuid4()), env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "result store did not answer" in out.stderr and "refused" in out.stderr.lower()
    assert ":pw@" not in out.stderr


def test_flower_without_flower_installed_says_how_to_install_it(monkeypatch, redis_url):
    import importlib.util

    from typer.testing import CliRunner

    from offload.cli import build_cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "flower" else real_find_spec(name, *a))
    out = CliRunner().invoke(build_cli(), ["flower"], env={"OFFLOAD_BROKER_URL": redis_url})
    assert out.exit_code == 2
    assert "pip install 'offload[flower]'" in out.stderr
