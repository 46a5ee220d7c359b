"""Logging: JSON in production, readable in development, task lines carry task id/name/tenant."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import logging, structlog
from celery import shared_task
from offload.factory import create_worker_app
from offload.logs import get_logger
from offload.server.dev import InProcessWorker
from offload.settings import load_settings

@shared_task(name="logs.work")
def work():
    structlog.contextvars.bind_contextvars(tenant="acme")   # what TaskContext does
    try:
        get_logger("logs.test").info("structlog_line", rows=3)
        logging.getLogger("logs.plain").warning("plain stdlib line")
    finally:
        structlog.contextvars.clear_contextvars()
    return "ok"

settings = load_settings(task_packages=[], result_backend="cache+memory://",
                         log_format="{fmt}", data_dir="{data_dir}")
app = create_worker_app(settings=settings)
app.set_default()
worker = InProcessWorker(app, concurrency=1)
worker.start()
result = app.tasks["logs.work"].delay()
assert result.get(timeout=20) == "ok"
get_logger("logs.test").info("outside_task")
worker.stop(timeout=20)
print("TASK_ID", result.id)
"""


def _run(fmt: str, tmp_path) -> tuple[str, list[str]]:
    script = SCRIPT.replace("{fmt}", fmt).replace("{data_dir}", str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.split("TASK_ID", 1)[1].strip()
    return task_id, out.stderr.splitlines()


def test_json_lines_carry_task_id_name_and_tenant(tmp_path):
    task_id, lines = _run("json", tmp_path)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len([line for line in lines if line.strip()]), lines  # all JSON
    by_event = {r["event"]: r for r in records}
    for event in ("structlog_line", "plain stdlib line"):
        record = by_event[event]
        assert record["task_id"] == task_id
        assert record["task_name"] == "logs.work"
        assert record["tenant"] == "acme"
    assert by_event["structlog_line"]["rows"] == 3
    assert by_event["plain stdlib line"]["level"] == "warning"
    # Celery's own line about the task carries the id too
    succeeded = [r for r in records if "succeeded" in r["event"]]
    assert succeeded and succeeded[0]["task_id"] == task_id
    # and a line outside any task has no task fields
    assert "task_id" not in by_event["outside_task"] and "tenant" not in by_event["outside_task"]
    assert {"timestamp", "level", "logger"} <= set(by_event["outside_task"])


def test_console_lines_are_readable(tmp_path):
    task_id, lines = _run("console", tmp_path)
    line = next(line for line in lines if "structlog_line" in line)
    assert not line.startswith("{")
    assert f"task_id={task_id}" in line and "task_name=logs.work" in line
    assert "tenant=acme" in line and "rows=3" in line


def test_auto_format_is_json_in_production_and_readable_in_dev(make_settings, monkeypatch):
    import io

    from offload.logs import resolve_format

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a container's stderr: not a terminal
    assert resolve_format(make_settings(broker_url="redis://127.0.0.1:6379/0")) == "json"
    assert resolve_format(make_settings()) == "console"  # offload dev: in-process broker
    assert resolve_format(make_settings(log_format="console",
                                        broker_url="redis://127.0.0.1:6379/0")) == "console"
