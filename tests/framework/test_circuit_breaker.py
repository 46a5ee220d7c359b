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


def trip(breaker: CircuitBreaker, service: Flaky, failures: int) -> None:
    for _ in range(failures):  # the call that trips it still raises its own error
        with pytest.raises(ConnectionError):
            breaker.call(service)


def first_admitted(breaker: CircuitBreaker, service: Flaky, *args, timeout: float = 30):
    """Call until the breaker lets a call through; every refusal must leave the service
    alone. Returns (monotonic time of the admitted call, its result or its error).

    Waiting on the condition, not for a fixed time: on a loaded machine this only takes
    longer, and the timing assertions of the tests are lower bounds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = service.calls
        at = time.monotonic()
        try:
            return at, breaker.call(service, *args)
        except CircuitBreakerOpen:
            assert service.calls == calls, "a refused call reached the service"
        except ConnectionError as exc:
            return at, exc
        time.sleep(0.01)
    raise AssertionError(f"{breaker!r} admitted no call within {timeout} s")


def test_opens_after_threshold_and_refuses_without_calling():
    breaker = CircuitBreaker("fw-local", failure_threshold=3, reset_timeout=60)
    service = Flaky()
    trip(breaker, service, 3)
    assert breaker.state == "open"
    for _ in range(3):
        with pytest.raises(CircuitBreakerOpen, match="'fw-local' is open after 3 failures"):
            breaker.call(service)
    assert service.calls == 3  # refused without calling


def test_trial_after_the_reset_timeout_closes_it():
    breaker = CircuitBreaker("fw-reset", failure_threshold=3, reset_timeout=0.3)
    service = Flaky()
    trip(breaker, service, 2)
    before_opening = time.monotonic()
    trip(breaker, service, 1)
    service.failing = False
    at, value = first_admitted(breaker, service, 7)
    assert value == 7 and at - before_opening >= 0.3  # the trial call closes it, not earlier
    assert breaker.state == "closed" and breaker.failure_count == 0
    assert service.calls == 4


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
    before_opening = time.monotonic()
    with pytest.raises(ConnectionError):
        breaker.call(service)
    assert breaker.state == "open"
    # the trial fails: open again, for a whole reset_timeout from the failed trial
    at, error = first_admitted(breaker, service)
    assert isinstance(error, ConnectionError) and at - before_opening >= 0.2
    assert breaker.state == "open"
    service.failing = False
    again, value = first_admitted(breaker, service, 3)
    assert value == 3 and again - at >= 0.2
    assert breaker.state == "closed"


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
    both = threading.Barrier(2, timeout=30)

    def slow() -> None:
        inside.release()
        both.wait()  # only passes if two calls are inside at the same time

    threads = [threading.Thread(target=breaker.call, args=(slow,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not both.broken


def test_state_shared_through_redis(redis_url):
    name = f"fw-shared-{tag()}"
    # Two breakers with the same name stand for two worker processes
    worker_a = CircuitBreaker(name, failure_threshold=2, reset_timeout=60, redis_url=redis_url)
    worker_b = CircuitBreaker(name, failure_threshold=2, reset_timeout=60, redis_url=redis_url)
    service = Flaky()
    trip(worker_a, service, 2)
    # worker b never failed, yet its breaker is open
    assert worker_b.state == "open"
    with pytest.raises(CircuitBreakerOpen):
        worker_b.call(service)
    assert service.calls == 2


def test_shared_breaker_stays_open_at_least_its_reset_timeout(redis_url):
    # pybreaker keeps the opening time in whole seconds in Redis: the breaker must still wait
    # the whole reset_timeout (and at most a second more), whatever the fraction was
    name = f"fw-shared-{tag()}"
    worker_a = CircuitBreaker(name, failure_threshold=1, reset_timeout=1, redis_url=redis_url)
    worker_b = CircuitBreaker(name, failure_threshold=1, reset_timeout=1, redis_url=redis_url)
    service = Flaky()
    before_opening = time.monotonic()
    trip(worker_a, service, 1)
    service.failing = False
    at, value = first_admitted(worker_b, service, 5)
    assert value == 5 and at - before_opening >= 1
    assert worker_a.state == "closed"


def test_shared_needs_redis(make_settings, redis_url):
    assert CircuitBreaker.shared("x", make_settings(broker_url=redis_url)).redis_url == redis_url
    with pytest.raises(ConfigurationError, match="cannot be shared"):
        CircuitBreaker.shared("x", make_settings())
    with pytest.raises(ConfigurationError):
        CircuitBreaker("x", failure_threshold=0)
