"""Bad settings fail at start-up with one clear message naming the setting (one test per kind)."""

from __future__ import annotations

import pytest

from offload import ConfigurationError, create_worker_app
from offload.settings import load_settings

from .conftest import run_offload


def _error(**overrides) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**overrides)
    return str(info.value)


def test_unknown_broker_scheme():
    message = _error(broker_url="kafka://127.0.0.1:9092")
    assert "broker_url (OFFLOAD_BROKER_URL)" in message
    assert "unknown URL scheme 'kafka'" in message and "redis://" in message


def test_unknown_result_backend_scheme():
    message = _error(result_backend="mongodb://127.0.0.1/x")
    assert "result_backend (OFFLOAD_RESULT_BACKEND)" in message and "'mongodb'" in message


def test_unknown_database_scheme():
    message = _error(database_url="mysql://127.0.0.1/x")
    assert "database_url (OFFLOAD_DATABASE_URL)" in message and "postgresql+asyncpg" in message


def test_password_is_not_echoed_in_errors():
    message = _error(broker_url="kafka://user:s3cret@127.0.0.1:9092")
    assert "s3cret" not in message and "***" in message


def test_negative_timeout():
    message = _error(socket_timeout=-1)
    assert "socket_timeout (OFFLOAD_SOCKET_TIMEOUT)" in message and "greater than 0" in message


def test_soft_limit_not_below_hard_limit():
    message = _error(task_time_limit=10, task_soft_time_limit=20)
    assert "task_soft_time_limit must be below task_time_limit" in message


def test_unknown_queue():
    message = _error(worker_queues=["urgent"])
    assert "worker_queues (OFFLOAD_WORKER_QUEUES)" in message and "high_priority" in message


def test_several_bad_settings_reported_together():
    message = _error(socket_timeout=0, api_port=70000)
    assert "OFFLOAD_SOCKET_TIMEOUT" in message and "OFFLOAD_API_PORT" in message


def test_missing_task_package(make_settings):
    with pytest.raises(ConfigurationError, match="OFFLOAD_TASK_PACKAGES"):
        create_worker_app(settings=make_settings(task_packages=["no_such_package_here"]))


def test_task_module_that_fails_to_import(make_settings):
    with pytest.raises(ConfigurationError, match="OFFLOAD_TASK_MODULES"):
        create_worker_app(settings=make_settings(task_packages=[],
                                                 task_modules=["no_such_module_here"]))


def test_env_value_is_validated_too(monkeypatch):
    monkeypatch.setenv("OFFLOAD_SOCKET_CONNECT_TIMEOUT", "-5")
    assert "OFFLOAD_SOCKET_CONNECT_TIMEOUT" in _error()


def test_cli_start_up_error_is_one_clear_message(subprocess_env):
    # Given a bad broker URL in the environment
    env = subprocess_env(broker_url="kafka://127.0.0.1:9092", task_packages="[]")
    # When a production role starts
    out = run_offload("worker", env=env)
    # Then it exits 2 with the setting named, and no traceback
    assert out.returncode == 2
    assert "OFFLOAD_BROKER_URL" in out.stderr and "Traceback" not in out.stderr


def test_cli_role_without_a_shared_broker(subprocess_env):
    out = run_offload("worker", env=subprocess_env(task_packages="[]"))
    assert out.returncode == 2
    assert "needs a shared broker" in out.stderr and "OFFLOAD_BROKER_URL" in out.stderr


def test_cli_flower_without_a_broker(subprocess_env):
    out = run_offload("flower", env=subprocess_env(task_packages="[]"))
    assert out.returncode == 2 and "OFFLOAD_BROKER_URL" in out.stderr


def test_cli_api_refuses_the_embedded_result_store(subprocess_env, redis_url):
    out = run_offload("api", env=subprocess_env(task_packages="[]", broker_url=redis_url))
    assert out.returncode == 2 and "OFFLOAD_RESULT_BACKEND" in out.stderr


def test_dev_refuses_a_non_loopback_address(subprocess_env):
    out = run_offload("dev", "--host", "0.0.0.0", env=subprocess_env(task_packages="[]"))
    assert out.returncode == 2 and "loopback" in out.stderr


def test_cli_options_are_validated_like_settings(subprocess_env):
    env = subprocess_env(task_packages="[]")
    for args, setting in ((("dev", "--port", "70000"), "OFFLOAD_API_PORT"),
                          (("dev", "--concurrency", "0"), "OFFLOAD_WORKER_CONCURRENCY"),
                          (("worker", "-Q", "urgent"), "OFFLOAD_WORKER_QUEUES")):
        out = run_offload(*args, env=env)
        assert out.returncode == 2, (args, out.stderr)
        assert setting in out.stderr and "Traceback" not in out.stderr
