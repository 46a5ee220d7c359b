"""The production roles as separate processes: `offload worker`, `offload beat`, `offload flower`."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from offload.factory import create_worker_app

from .conftest import OFFLOAD, purge
from .test_dev import _free_port


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([OFFLOAD, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"{proc.args} did not stop:\n{output}") from None
    return output


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, f"{proc.args} did not serve"
        time.sleep(0.2)


def _wait_for(condition, what: str, procs, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        alive = all(proc.poll() is None for proc in procs)
        assert time.monotonic() < deadline and alive, what
        time.sleep(0.1)


def _ran(app, task_name: str) -> bool:
    """Whether a result of ``task_name`` is stored (result_extended records the name)."""
    client = app.backend.client
    return any(f'"name": "{task_name}"'.encode() in (client.get(key) or b"")
               for key in client.scan_iter("celery-task-meta-*"))


@pytest.mark.slow
def test_worker_beat_and_api_processes(subprocess_env, redis_settings, redis_url):
    # Given worker, beat and API processes on Redis, beat ticking fdn.tick every second
    port = _free_port()
    env = subprocess_env(broker_url=redis_url, result_backend=redis_url,
                         task_packages='["fdn_demo"]', beat_overrides='{"fdn.tick": 1}',
                         api_keys='{"k-acme": "acme"}', api_port=str(port))
    app = create_worker_app(settings=redis_settings())
    purge(app)
    worker = _start("worker", "--concurrency", "1", env=env)
    beat = _start("beat", env=env)
    api = _start("api", env=env)
    try:
        # When a client sends a task directly
        result = app.tasks["fdn.add"].delay(40, 2)
        # Then the worker process runs it
        assert result.get(timeout=30) == 42
        # and a tenant can do the same through the API process
        base = f"http://127.0.0.1:{port}"
        assert _wait_http(f"{base}/health", api).json()["status"] == "ok"
        key = {"Authorization": "Bearer k-acme"}
        task_id = httpx.post(f"{base}/fdn/add", json={"a": 1, "b": 2}, headers=key).json()[
            "task_id"]
        assert app.AsyncResult(task_id).get(timeout=30) == 3
        assert httpx.get(f"{base}/tasks/{task_id}", headers=key).json()["result"] == 3
        # and a tick that beat sent is run by the worker (its result names the task)
        _wait_for(lambda: _ran(app, "fdn.tick"), "no fdn.tick result", (worker, beat))
    finally:
        api_output = _stop(api)
        beat_output = _stop(beat)
        worker_output = _stop(worker)
        purge(app)
    assert api.returncode == 0, api_output
    # and both stop cleanly on SIGTERM (warm shutdown)
    assert beat.returncode == 0, beat_output
    assert worker.returncode == 0, worker_output
    # and beat's schedule (declared by the module, overridden by settings) reached the worker
    assert "Sending due task fdn.tick" in beat_output
    assert "fdn.tick[" in worker_output and "succeeded" in worker_output
    # and the worker used the production pool
    assert "(prefork)" in worker_output


@pytest.mark.slow
def test_flower_process_serves_the_broker(subprocess_env, redis_url):
    port = _free_port()
    env = subprocess_env(broker_url=redis_url, task_packages='["fdn_demo"]')
    flower = _start("flower", "--port", str(port), env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).text == "OK":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and flower.poll() is None, "flower did not start"
            time.sleep(0.2)
    finally:
        output = _stop(flower, signal.SIGINT)  # Ctrl-C
    assert flower.returncode == 0, output
    assert "fdn_demo" not in output  # the monitor app imports no task module
