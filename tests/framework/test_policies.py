"""Retry policies are data: delays, jitter bounds, the table and the normaliser."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload import RetryPolicy, TaskDefinitionError, register_retry_policy
from offload.tasks.policies import get_retry_policy, normalize_retry_policy, retry_policies


@pytest.mark.parametrize(
    ("name", "retries", "base"),
    [("standard", 3, 60), ("aggressive", 5, 30), ("high_priority", 3, 120),
     ("long_running", 2, 300), ("no_retry", 0, 0)],
)
def test_builtin_policies(name, retries, base):
    policy = get_retry_policy(name)
    assert (policy.max_retries, policy.base_delay, policy.max_delay) == (
        retries, base, 600 if base else 0)


def test_standard_countdowns_start_at_a_minute_and_double():
    # Not Celery's retry_backoff, whose first delay is ~1 s whatever the base.
    policy = get_retry_policy("standard")
    rng = random.Random(7)
    for retries, expected in [(0, 60), (1, 120), (2, 240), (3, 480), (4, 600), (9, 600)]:
        low, high = policy.bounds(retries)
        assert low == pytest.approx(expected * 0.9)
        assert high == pytest.approx(min(expected * 1.1, 600))
        samples = [policy.countdown(retries, rng) for _ in range(200)]
        assert all(low <= s <= high for s in samples)
        assert max(samples) - min(samples) > 0  # jitter really spreads them
    assert policy.countdown(50) <= 600


def test_long_running_is_capped_at_600():
    policy = get_retry_policy("long_running")
    assert policy.bounds(0) == pytest.approx((270, 330))
    assert policy.bounds(1) == pytest.approx((540, 600))


def test_no_jitter_is_exact():
    policy = RetryPolicy(max_retries=4, base_delay=0.5, max_delay=3, jitter=0)
    assert [policy.countdown(n) for n in range(5)] == [0.5, 1, 2, 3, 3]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"max_retries": 1.5}, {"base_delay": -1}, {"jitter": 1},
     {"base_delay": 100, "max_delay": 10}, {"base_delay": float("nan")}, {"max_retries": True}],
)
def test_invalid_policies_are_refused(kwargs):
    with pytest.raises(TaskDefinitionError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        get_retry_policy("standard").max_retries = 10  # type: ignore[misc]


def test_register_and_normalise():
    mine = RetryPolicy(max_retries=7, base_delay=5, max_delay=50)
    assert register_retry_policy("fw_test_custom", mine) is mine
    assert register_retry_policy("fw_test_custom", RetryPolicy(7, 5, 50)) == mine  # same: ok
    with pytest.raises(TaskDefinitionError, match="already registered"):
        register_retry_policy("fw_test_custom", RetryPolicy(max_retries=1))
    register_retry_policy("fw_test_custom", RetryPolicy(max_retries=1), replace=True)
    assert retry_policies()["fw_test_custom"].max_retries == 1
    assert normalize_retry_policy("fw_test_custom").max_retries == 1
    assert normalize_retry_policy(True) == get_retry_policy("standard")
    assert normalize_retry_policy(False).max_retries == 0
    assert normalize_retry_policy(None).max_retries == 0
    assert normalize_retry_policy(5) == RetryPolicy(max_retries=5, base_delay=60)
    assert normalize_retry_policy(mine) is mine
    with pytest.raises(TaskDefinitionError, match="unknown retry policy 'nope'"):
        normalize_retry_policy("nope")
    with pytest.raises(TaskDefinitionError):
        normalize_retry_policy(1.5)  # type: ignore[arg-type]


@given(
    max_retries=st.integers(0, 20),
    base=st.floats(0, 1000, allow_nan=False),
    extra=st.floats(0, 5000, allow_nan=False),
    jitter=st.floats(0, 0.99, allow_nan=False),
    retries=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_countdown_stays_within_its_bounds_and_the_cap(max_retries, base, extra, jitter,
                                                        retries, seed):
    policy = RetryPolicy(max_retries=max_retries, base_delay=base, max_delay=base + extra,
                         jitter=jitter)
    countdown = policy.countdown(retries, random.Random(seed))
    low, high = policy.bounds(retries)
    assert 0 <= countdown <= policy.max_delay
    assert low - 1e-9 <= countdown <= high + 1e-9
    assert policy.delay(retries) <= policy.delay(retries + 1)  # never shrinks
