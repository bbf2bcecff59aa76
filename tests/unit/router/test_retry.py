"""Retry policy maths: back-off bounds, Retry-After decisions, the retry budget."""
from __future__ import annotations

import random

from gateway.errors import provider_error_from_status
from plugins.middleware.router.retry import RetryBudget, RetryPolicy


def test_backoff_is_fully_jittered_exponential_with_envoy_defaults() -> None:
    p, rng = RetryPolicy(), random.Random(0)
    for n, cap in ((1, 0.025), (2, 0.075), (3, 0.175), (4, 0.25), (10, 0.25)):
        waits = [p.backoff(n, rng) for _ in range(500)]
        assert 0 <= min(waits) and max(waits) <= cap
        assert max(waits) > cap * 0.8  # the range is used, not a constant


def test_retry_after_is_honoured_only_in_honour_mode_within_cap_deadline_and_total_wait() -> None:
    err = provider_error_from_status(429, "slow down", retry_after=1.0)
    assert RetryPolicy(retry_after_mode="fallback").honour_wait(err, 10, 0) is None
    p = RetryPolicy(retry_after_mode="honour", max_retry_after=5, max_retry_wait=3)
    assert p.honour_wait(err, 10, 0) == 1.0
    assert p.honour_wait(err, 0.5, 0) is None  # does not fit the deadline
    assert p.honour_wait(err, 10, 2.5) is None  # total wait cap
    long = provider_error_from_status(429, "slow down", retry_after=30.0)
    assert p.honour_wait(long, 100, 0) is None  # above the cap: fall back


def test_retry_budget_allows_the_minimum_then_a_percentage_of_active_requests() -> None:
    b = RetryBudget(percent=20, minimum=3)
    b.active = 10
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    b.active = 100
    assert sum(b.try_acquire() for _ in range(30)) == 17  # 20 allowed, 3 already held
    b.release()
    assert b.try_acquire()


def test_zero_percent_budget_is_off() -> None:
    b = RetryBudget(percent=0)
    assert all(b.try_acquire() for _ in range(100))
