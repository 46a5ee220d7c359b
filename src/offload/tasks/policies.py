"""Retry policies are data: a frozen :class:`RetryPolicy` and a table of named ones.

The countdown of retry *n* (0-based: the first retry is ``n=0``) is
``min(base_delay * 2**n, max_delay)``, spread by ``±jitter`` (a fraction) and never above
``max_delay``. With ``standard`` that is ~60 s, ~120 s, ~240 s. Celery's own
``retry_backoff=True`` is *not* used: it ignores ``default_retry_delay`` and starts at ~1 s.

Built-in policies (``register_retry_policy`` adds more)::

    standard       3 retries, 60 s base
    aggressive     5 retries, 30 s base
    high_priority  3 retries, 120 s base
    long_running   2 retries, 300 s base
    no_retry       0 retries
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

from offload.errors import TaskDefinitionError

__all__ = [
    "RetryPolicy",
    "get_retry_policy",
    "normalize_retry_policy",
    "register_retry_policy",
    "retry_policies",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed task is tried again.

    ``max_retries`` counts retries after the first attempt (3 means at most 4 runs).
    Delays are seconds; ``jitter`` is the fraction by which a delay is randomly spread
    (0.1 -> ±10 %) so that tasks failing together do not come back together.
    """

    max_retries: int = 3
    base_delay: float = 60.0
    max_delay: float = 600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TaskDefinitionError(f"RetryPolicy.max_retries must be an int, got "
                                      f"{self.max_retries!r}")
        if self.max_retries < 0:
            raise TaskDefinitionError("RetryPolicy.max_retries must be >= 0")
        for field in ("base_delay", "max_delay", "jitter"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TaskDefinitionError(f"RetryPolicy.{field} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise TaskDefinitionError(f"RetryPolicy.{field} must be finite and >= 0")
        if self.max_delay < self.base_delay:
            raise TaskDefinitionError(
                f"RetryPolicy.max_delay ({self.max_delay}) is below base_delay "
                f"({self.base_delay})"
            )
        if self.jitter >= 1:
            raise TaskDefinitionError("RetryPolicy.jitter is a fraction below 1 (0.1 = ±10 %)")

    def delay(self, retries: int) -> float:
        """The delay before retry number ``retries`` (0-based), without jitter."""
        exponent = min(max(retries, 0), 64)  # 2**64 * anything is past any cap
        return min(self.base_delay * 2**exponent, self.max_delay)

    def countdown(self, retries: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``retries`` (0-based), with jitter, capped."""
        delay = self.delay(retries)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            delay *= 1 + spread
        return max(0.0, min(delay, self.max_delay))

    def bounds(self, retries: int) -> tuple[float, float]:
        """The least and the greatest value :meth:`countdown` can return for ``retries``."""
        delay = self.delay(retries)
        return delay * (1 - self.jitter), min(delay * (1 + self.jitter), self.max_delay)


_BUILTIN = {
    "standard": RetryPolicy(max_retries=3, base_delay=60),
    "aggressive": RetryPolicy(max_retries=5, base_delay=30),
    "high_priority": RetryPolicy(max_retries=3, base_delay=120),
    "long_running": RetryPolicy(max_retries=2, base_delay=300),
    "no_retry": RetryPolicy(max_retries=0, base_delay=0, max_delay=0, jitter=0),
}
_policies: dict[str, RetryPolicy] = dict(_BUILTIN)
_lock = threading.Lock()


def register_retry_policy(name: str, policy: RetryPolicy, *, replace: bool = False) -> RetryPolicy:
    """Make ``policy`` usable as ``retry_policy=name``. Registering the same policy under the
    same name again is harmless; a different one needs ``replace=True`` (built-ins included).
    """
    if not isinstance(name, str) or not name:
        raise TaskDefinitionError("a retry policy needs a non-empty name")
    if not isinstance(policy, RetryPolicy):
        raise TaskDefinitionError(f"register_retry_policy({name!r}) needs a RetryPolicy")
    with _lock:
        existing = _policies.get(name)
        if existing is not None and existing != policy and not replace:
            raise TaskDefinitionError(
                f"retry policy {name!r} is already registered as {existing}; "
                "pass replace=True to change it"
            )
        _policies[name] = policy
    return policy


def get_retry_policy(name: str) -> RetryPolicy:
    try:
        return _policies[name]
    except KeyError:
        known = ", ".join(sorted(_policies))
        raise TaskDefinitionError(
            f"unknown retry policy {name!r}; use one of: {known} (or register_retry_policy)"
        ) from None


def retry_policies() -> dict[str, RetryPolicy]:
    """A copy of the table of named policies."""
    with _lock:
        return dict(_policies)


def normalize_retry_policy(value: bool | int | str | RetryPolicy | None) -> RetryPolicy:
    """Turn what a decorator accepts into a :class:`RetryPolicy`.

    ``RetryPolicy`` -> itself; ``str`` -> the registered policy of that name; ``True`` ->
    ``standard``; ``False`` / ``None`` -> ``no_retry``; an ``int`` n -> ``standard``'s delays
    with ``n`` retries.
    """
    if isinstance(value, RetryPolicy):
        return value
    if value is None or value is False:
        return get_retry_policy("no_retry")
    if value is True:
        return get_retry_policy("standard")
    if isinstance(value, int):
        standard = _BUILTIN["standard"]
        return RetryPolicy(
            max_retries=value,
            base_delay=standard.base_delay,
            max_delay=standard.max_delay,
            jitter=standard.jitter,
        )
    if isinstance(value, str):
        return get_retry_policy(value)
    raise TaskDefinitionError(
        f"retry_policy must be a RetryPolicy, a policy name, a bool or an int; got {value!r}"
    )
