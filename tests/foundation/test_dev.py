"""`offload dev`: the whole service in one process, driven over HTTP like a user would."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import httpx
import pytest

from .conftest import OFFLOAD

KEY = {"Authorization": "Bearer dev-key"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevProcess:
    def __init__(self, env: dict[str, str], cwd) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [OFFLOAD, "dev", "--port", str(self.port)], env=env, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_healthy(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"offload dev exited early:\n{self.proc.stdout.read()}")
            try:
                response = self.client.get("/health")
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("offload dev did not become healthy")

    def submit(self, task: str, **body) -> str:
        response = self.client.post(f"/fdn/{task}", json=body, headers=KEY)
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    def wait_state(self, task_id: str, states=("SUCCESS", "FAILURE"), timeout=20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.client.get(f"/tasks/{task_id}", headers=KEY).json()
            if body["state"] in states:
                return body
            time.sleep(0.05)
        raise AssertionError(f"{task_id} never reached {states}: {body}")

    def interrupt(self, timeout: float = 60) -> tuple[int, str]:
        self.client.close()
        self.proc.send_signal(signal.SIGINT)
        try:
            output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
            raise AssertionError(f"offload dev did not stop on SIGINT:\n{output}") from None
        return self.proc.returncode, output

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.mark.slow
def test_offload_dev_serves_runs_and_stops_cleanly(subprocess_env, tmp_path):
    env = subprocess_env(task_packages='["fdn_demo"]')
    data_dir = tmp_path / "offload-data"
    dev = DevProcess(env, cwd=tmp_path)
    try:
        # Given offload dev on the embedded defaults
        health = dev.wait_healthy()
        assert health["status"] == "ok"
        # When a task is sent over HTTP, its result comes back over HTTP
        task_id = dev.submit("add", a=20, b=22)
        assert dev.wait_state(task_id)["result"] == 42
        # and `offload status` asks that API (the embedded store belongs to the dev process)
        status = subprocess.run(
            [OFFLOAD, "status", task_id, "--json", "--watch"], check=False, text=True,
            capture_output=True, timeout=30, cwd=tmp_path,
            env={**env, "OFFLOAD_API_PORT": str(dev.port)},
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["result"] == 42
        # and the package's dev-start hook ran once the service was up
        hook_task, api_url = (data_dir / "dev-start.txt").read_text().split()
        assert api_url == dev.url
        assert dev.wait_state(hook_task)["result"] == 42
        # When SIGINT arrives while a task runs
        slow = dev.submit("slow", seconds=1.5)
        dev.wait_state(slow, states=("STARTED",))
        code, output = dev.interrupt()
    finally:
        dev.kill()
    # Then it exits 0 after the running task finished and stored its result
    assert code == 0, output
    assert f"fdn.slow[{slow}] succeeded" in output
    assert "Traceback" not in output

    # and the result survives a restart on the same data directory
    again = DevProcess(subprocess_env(task_packages='["fdn_demo"]'), cwd=tmp_path)
    try:
        again.wait_healthy()
        status = again.client.get(f"/tasks/{slow}", headers=KEY).json()
        # (a second `offload dev` on the same data directory is refused, not half-started)
        env = subprocess_env(task_packages='["fdn_demo"]')
        third = subprocess.run([OFFLOAD, "dev", "--port", str(_free_port())], check=False,
                               env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert third.returncode == 2 and "another `offload dev`" in third.stderr, third.stderr
        code, output = again.interrupt()
    finally:
        again.kill()
    assert status["state"] == "SUCCESS" and status["result"] == "slept 1.5", status
    assert code == 0, output
