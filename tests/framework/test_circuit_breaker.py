"""CircuitBreaker: opens after the threshold, refuses with CircuitBreakerOpen, half-opens
after the timeout; shared through Redis between independent breakers (workers)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from offload import CircuitBreakerOpen, ConfigurationError, TaskValidationError
from offload.extras import CircuitBreaker

from .conftest import tag


class Flaky:
    def __init__(self) -> None:
        self.calls = 0
        self.failing = True

    def __call__(self, value: int = 1) -> int:
        self.calls += 1
        if self.failing:
            raise ConnectionError("down")
        return value


def test_opens_after_threshold_and_recovers_after_timeout():
    breaker = CircuitBreaker("fw-local", failure_threshold=3, reset_timeout=0.3)
    service = Flaky()
    for _ in range(3):  # the call that trips it still raises its own error
        with pytest.raises(ConnectionError):
            breaker.call(service)
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerOpen, match="'fw-local' is open after 3 failures"):
        breaker.call(service)
    assert service.calls == 3  # refused without calling
    time.sleep(0.35)
    service.failing = False
    assert breaker.call(service, 7) == 7  # the trial call closes it
    assert breaker.state == "closed" and breaker.failure_count == 0


def test_failed_trial_reopens_and_success_resets_the_count():
    breaker = CircuitBreaker("fw-trial", failure_threshold=2, reset_timeout=0.2)
    service = Flaky()
    with pytest.raises(ConnectionError):
        breaker.call(service)
    service.failing = False
    breaker.call(service)  # a success in between: failures must be consecutive
    service.failing = True
    with pytest.raises(ConnectionError):
        breaker.call(service)
    assert breaker.state == "closed"
    with pytest.raises(ConnectionError):
        breaker.call(service)
    assert breaker.state == "open"
    time.sleep(0.25)
    with pytest.raises(ConnectionError):
        breaker.call(service)  # the trial fails
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerOpen):
        breaker.call(service)


def test_excluded_errors_do_not_count():
    breaker = CircuitBreaker("fw-exclude", failure_threshold=1, exclude=[TaskValidationError])

    def invalid() -> None:
        raise TaskValidationError("bad input")

    for _ in range(3):
        with pytest.raises(TaskValidationError):
            breaker.call(invalid)
    assert breaker.state == "closed"


def test_async_calls_and_decorators():
    breaker = CircuitBreaker("fw-async", failure_threshold=2, reset_timeout=60)
    calls = []

    @breaker
    async def fetch(value: int) -> int:
        calls.append(value)
        if value < 0:
            raise TimeoutError("slow")
        return value

    @breaker
    def sync_fetch(value: int) -> int:
        return value

    async def scenario() -> None:
        assert await fetch(1) == 1
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await fetch(-1)
        with pytest.raises(CircuitBreakerOpen):
            await fetch(2)
        with pytest.raises(CircuitBreakerOpen):
            await breaker.call_async(fetch.__wrapped__, 3)

    asyncio.run(scenario())
    assert calls == [1, -1, -1]
    with pytest.raises(CircuitBreakerOpen):
        sync_fetch(1)


def test_guarded_calls_run_concurrently():
    breaker = CircuitBreaker("fw-concurrent", failure_threshold=5)
    inside = threading.Semaphore(0)
    both = threading.Barrier(2, timeout=5)

    def slow() -> None:
        inside.release()
        both.wait()  # only passes if two calls are inside at the same time

    threads = [threading.Thread(target=breaker.call, args=(slow,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not both.broken


def test_state_shared_through_redis(redis_url):
    name = f"fw-shared-{tag()}"
    # Two breakers with the same name stand for two worker processes. pybreaker stores the
    # opening time in whole seconds, so a shared reset_timeout is only good to a second.
    worker_a = CircuitBreaker(name, failure_threshold=2, reset_timeout=1.5, redis_url=redis_url)
    worker_b = CircuitBreaker(name, failure_threshold=2, reset_timeout=1.5, redis_url=redis_url)
    service = Flaky()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            worker_a.call(service)
    # worker b never failed, yet its breaker is open
    assert worker_b.state == "open"
    with pytest.raises(CircuitBreakerOpen):
        worker_b.call(service)
    assert service.calls == 2
    time.sleep(2.6)
    service.failing = False
    assert worker_b.call(service, 5) == 5
    assert worker_a.state == "closed"


def test_shared_needs_redis(make_settings, redis_url):
    assert CircuitBreaker.shared("x", make_settings(broker_url=redis_url)).redis_url == redis_url
    with pytest.raises(ConfigurationError, match="cannot be shared"):
        CircuitBreaker.shared("x", make_settings())
    with pytest.raises(ConfigurationError):
        CircuitBreaker("x", failure_threshold=0)
