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


@pytest.mark.slow
def test_worker_and_beat_processes(subprocess_env, redis_settings, redis_url):
    # Given a worker process and a beat process on Redis, beat ticking fdn.tick every second
    env = subprocess_env(broker_url=redis_url, result_backend=redis_url,
                         task_packages='["fdn_demo"]', beat_overrides='{"fdn.tick": 1}')
    app = create_worker_app(settings=redis_settings())
    purge(app)
    worker = _start("worker", "--concurrency", "1", env=env)
    beat = _start("beat", env=env)
    try:
        # When a client sends a task
        result = app.tasks["fdn.add"].delay(40, 2)
        # Then the worker process runs it
        assert result.get(timeout=30) == 42
        time.sleep(2.5)
    finally:
        beat_output = _stop(beat)
        worker_output = _stop(worker)
        purge(app)
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
        output = _stop(flower)
    assert flower.returncode == 0, output
    assert "fdn_demo" not in output  # the monitor app imports no task module
