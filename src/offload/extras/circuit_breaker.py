"""A circuit breaker for calls to flaky services, built on :mod:`pybreaker`.

    breaker = CircuitBreaker("analytics", failure_threshold=5, reset_timeout=60)
    breaker.call(post_usage, batch)             # sync
    await breaker.call_async(post_usage, batch)  # async def
    @breaker                                     # or as a decorator (sync or async)

After ``failure_threshold`` failures in a row the breaker opens: calls fail at once with
:class:`~offload.errors.CircuitBreakerOpen` (a task's retry policy then retries it later)
until ``reset_timeout`` seconds have passed; the next call is a trial that closes the breaker
again on success or re-opens it on failure. The call that reaches the threshold still raises
its own error.

State is per process by default. With ``redis_url`` (or ``CircuitBreaker.shared(name,
settings)``) it lives in Redis, so one worker's failures open the breaker for every worker
(pybreaker's ``CircuitRedisStorage``; Redis is contacted on the first call, not before).
pybreaker stores the opening time in whole seconds there (rounded down), so a shared breaker
stays open between ``reset_timeout`` and ``reset_timeout + 1`` seconds — never less than
asked.

Unlike ``pybreaker.CircuitBreaker.call``, the guarded call runs *outside* the breaker's
lock: concurrent calls (threads pool, async tasks) are not serialised. Only admission and the
recording of the outcome are.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from offload.errors import CircuitBreakerOpen, ConfigurationError
from offload.settings import url_scheme

if TYPE_CHECKING:
    import pybreaker

    from offload.settings import Settings

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


def _noop() -> None:
    return None


def _reraise(exc: BaseException) -> None:
    raise exc


class CircuitBreaker:
    """Guard calls to one dependency; see the module docstring."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout: float = 60,
        *,
        redis_url: str | None = None,
        exclude: Iterable[type[BaseException]] = (),
        namespace: str = "offload:breaker",
    ) -> None:
        if not name:
            raise ConfigurationError("a circuit breaker needs a name")
        if failure_threshold < 1:
            raise ConfigurationError("failure_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ConfigurationError("reset_timeout must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.redis_url = redis_url
        self.exclude = tuple(exclude)
        self.namespace = f"{namespace}:{name}"
        self._breaker: pybreaker.CircuitBreaker | None = None
        # Redis storage keeps the opening time in whole seconds, rounded down: wait the
        # extra second rather than admit a trial early (pybreaker's own check is the laxer)
        self._resolution = 1.0 if redis_url else 0.0
        self._init_lock = threading.Lock()

    @classmethod
    def shared(cls, name: str, settings: Settings, **options: Any) -> CircuitBreaker:
        """A breaker whose state every worker shares, in the Redis of ``settings`` (its result
        store if that is Redis, else its broker)."""
        for url in (settings.results, settings.broker):
            if url_scheme(url) in {"redis", "rediss"}:
                return cls(name, redis_url=url, **options)
        raise ConfigurationError(
            f"circuit breaker {name!r} cannot be shared: neither the broker nor the result "
            "store is Redis (set OFFLOAD_BROKER_URL=redis://...)"
        )

    # --- pybreaker, built on first use -------------------------------------------------------
    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        breaker = self._breaker
        if breaker is None:
            with self._init_lock:
                breaker = self._breaker
                if breaker is None:
                    breaker = self._breaker = self._build()
        return breaker

    def _build(self) -> pybreaker.CircuitBreaker:
        import pybreaker

        storage: pybreaker.CircuitBreakerStorage
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=self.namespace
            )
        else:
            storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        return pybreaker.CircuitBreaker(
            fail_max=self.failure_threshold,
            reset_timeout=self.reset_timeout,
            exclude=list(self.exclude),
            state_storage=storage,
            name=self.name,
            throw_new_error_on_trip=False,
        )

    # --- state -----------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self.breaker.current_state)

    @property
    def failure_count(self) -> int:
        return self.breaker.fail_counter

    def open(self) -> None:
        self.breaker.open()

    def close(self) -> None:
        self.breaker.close()

    def __repr__(self) -> str:
        where = "redis" if self.redis_url else "process"
        return (f"CircuitBreaker({self.name!r}, failure_threshold={self.failure_threshold}, "
                f"reset_timeout={self.reset_timeout}, state in {where})")

    # --- calls -----------------------------------------------------------------------------------
    def _admit(self) -> None:
        breaker = self.breaker
        with breaker._lock:
            if breaker.current_state != OPEN:
                return
            opened_at = breaker._state_storage.opened_at
            if opened_at is None:
                return
            reopens = opened_at + timedelta(seconds=self.reset_timeout + self._resolution)
            now = datetime.now(UTC)
            if now < reopens:
                raise CircuitBreakerOpen(
                    f"circuit breaker {self.name!r} is open after {self.failure_threshold} "
                    f"failures; calls are refused for {(reopens - now).total_seconds():.1f} s more"
                )

    def _record(self, exc: BaseException | None) -> None:
        breaker = self.breaker
        try:
            if exc is None:
                breaker.call(_noop)
            else:
                breaker.call(_reraise, exc)
        except BaseException:  # noqa: BLE001, S110 - the outcome is recorded; the caller
            pass  # gets the original result or error, never pybreaker's

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` if the breaker admits it; record whether it failed."""
        self._admit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # cancellation and interrupts are nobody's failure
            self._record(exc)
            raise
        self._record(None)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` if the breaker admits it; record whether it failed."""
        self._admit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:  # cancellation and interrupts are nobody's failure
            self._record(exc)
            raise
        self._record(None)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Use the breaker as a decorator of a sync or async function."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.call(fn, *args, **kwargs)

        return guarded  # type: ignore[return-value]
