"""The HTTP service over a real worker: health, task status, SSE, auth, tenancy, metrics."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from offload.factory import create_worker_app
from offload.integrations.fastapi import tenant_task_id
from offload.server import create_api

from .conftest import running_worker

KEY_A, KEY_B = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url):
    # One service for the module: starting and stopping a worker costs about a second.
    from offload.settings import load_settings

    settings = load_settings(
        broker_url=redis_url, result_backend=redis_url, task_packages=["fdn_demo"],
        data_dir=tmp_path_factory.mktemp("server-data"), database_url=None,
        api_keys={"key-a": "acme", "key-b": "globex"},
    )
    celery = create_worker_app(settings=settings)
    api = create_api(settings, celery)
    with running_worker(celery), TestClient(api) as client:
        yield client, celery


def _wait(client, task_id, headers, states=("SUCCESS", "FAILURE")):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = client.get(f"/tasks/{task_id}", headers=headers).json()
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {body}")


def test_health_reports_each_service(service):
    client, _ = service
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"broker", "results", "database"}
    assert all(check["ok"] for check in body["checks"].values())


def test_health_names_the_unreachable_service(make_settings, redis_url):
    # Given a service whose result store does not answer
    settings = make_settings(broker_url=redis_url, result_backend="redis://127.0.0.1:1/0",
                             task_packages=[], api_keys={"key-a": "acme"})
    api = create_api(settings, create_worker_app(settings=settings), health_timeout=2)
    task_id = tenant_task_id("acme")
    with TestClient(api) as client:
        anonymous = client.get("/health")
        response = client.get("/health", headers=KEY_A)
        status = client.get(f"/tasks/{task_id}", headers=KEY_A)
        events = client.get(f"/tasks/{task_id}/events", headers=KEY_A)
    # Then /health says which one, with the reason
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] and checks["database"]["ok"]
    assert not checks["results"]["ok"] and "refused" in checks["results"]["detail"].lower()
    # but an anonymous caller only learns which service is down, not its address
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"]["results"] == {
        "ok": False, "seconds": anonymous.json()["checks"]["results"]["seconds"]
    }
    assert "127.0.0.1" not in anonymous.text
    # and a task's status is 503 (not a 500), its event stream ends without a `done`
    assert status.status_code == 503 and "/health" in status.json()["detail"]
    assert events.status_code == 200 and "event: done" not in events.text


def test_task_status_success_and_failure(service):
    client, _celery = service
    # Given a task submitted by tenant acme through the package router (plug-in mounted)
    task_id = client.post("/fdn/add", json={"a": 1, "b": 2}, headers=KEY_A).json()["task_id"]
    # Then its status JSON has the contract's shape
    assert _wait(client, task_id, KEY_A) == {
        "task_id": task_id, "state": "SUCCESS", "progress": None, "result": 3, "error": None,
    }
    failed = client.post("/fdn/fail", json={"message": "no"}, headers=KEY_A).json()["task_id"]
    body = _wait(client, failed, KEY_A)
    assert body["state"] == "FAILURE" and body["result"] is None
    assert body["error"] == {"type": "ValueError", "message": "no"}


def test_unknown_key_is_401_and_another_tenants_task_is_404(service):
    client, celery = service
    task_id = client.post("/fdn/add", json={"a": 1, "b": 1}, headers=KEY_A).json()["task_id"]
    assert client.get(f"/tasks/{task_id}").status_code == 401
    assert client.get(f"/tasks/{task_id}", headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    assert client.get(f"/tasks/{task_id}", headers=KEY_B).status_code == 404
    assert client.get(f"/tasks/{task_id}/events", headers=KEY_B).status_code == 404
    # an id that no tenant made (e.g. a beat task) is nobody's
    plain = celery.tasks["fdn.add"].delay(1, 1)
    assert client.get(f"/tasks/{plain.id}", headers=KEY_A).status_code == 404
    # an id with the tenant's prefix but not made by tenant_task_id is nobody's either
    assert client.get(f"/tasks/{task_id[:17]}x", headers=KEY_A).status_code == 404
    # a tenant's own id that was never used is simply PENDING
    unused = tenant_task_id("acme")
    assert client.get(f"/tasks/{unused}", headers=KEY_A).json()["state"] == "PENDING"


def test_events_stream_progress_then_done(service):
    client, _ = service
    task_id = client.post("/fdn/progress", json={"steps": 4}, headers=KEY_A).json()["task_id"]
    events = []
    with client.stream("GET", f"/tasks/{task_id}/events", headers=KEY_A) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1
    assert set(names[:-1]) <= {"progress", "ping"}
    progress = [data for name, data in events if name == "progress" and data["progress"]]
    assert progress, events
    assert all(0 <= data["progress"]["percent"] <= 100 for data in progress)
    assert progress[0]["progress"]["stage"].startswith("step")
    done = events[-1][1]
    assert done["state"] == "SUCCESS" and done["result"] == 4


def test_events_stream_stops_at_its_timeout(service):
    client, _ = service
    task_id = client.post("/fdn/slow", json={"seconds": 2}, headers=KEY_A).json()["task_id"]
    with client.stream("GET", f"/tasks/{task_id}/events?timeout=0.3", headers=KEY_A) as resp:
        text = "".join(resp.iter_text())
    assert "event: timeout" in text and "event: done" not in text


def test_metrics_count_requests_by_route(service):
    client, _ = service
    client.get("/health")
    body = client.get("/metrics").text
    assert 'offload_http_requests_total{method="GET",route="/health",status="200"}' in body
    assert "offload_http_request_seconds_bucket" in body


def test_schema_upgrade_ran_at_startup(service):
    import sqlite3

    _client, celery = service
    from offload.factory import settings_of

    path = settings_of(celery).database.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM fdn_marker").fetchall() == [(1,)]


def test_dashboard_and_openapi(service):
    client, _ = service
    assert "offload" in client.get("/").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/tasks/{task_id}", "/tasks/{task_id}/events", "/fdn/{task}"} <= set(paths)
