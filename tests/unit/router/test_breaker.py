"""Circuit breaker per target, on a fake clock."""
from __future__ import annotations

from plugins.middleware.router.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**kw: float) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(BreakerSettings(**kw), clock), clock


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    b, _ = make(failures=3, failure_rate=0)
    b.failure(); b.failure(); b.success(); b.failure(); b.failure()
    assert b.state == CLOSED
    b.failure()
    assert b.state == OPEN and not b.allow()


def test_opens_on_failure_ratio_over_the_window_only_with_the_minimum_count() -> None:
    b, clock = make(failures=0, failure_rate=0.5, window=10, min_requests=10)
    for i in range(8):
        (b.failure if i % 2 else b.success)()
    assert b.state == CLOSED  # 4/8 failed, below min_requests
    b.success(); b.failure()
    assert b.state == OPEN  # 5/10


def test_old_outcomes_leave_the_window() -> None:
    b, clock = make(failures=0, failure_rate=0.5, window=10, min_requests=4)
    b.failure(); b.failure(); b.failure()
    clock.t += 20
    b.success(); b.success(); b.success(); b.failure()
    assert b.state == CLOSED  # 1/4 in the window


def test_half_open_lets_exactly_one_probe_through_after_the_cooldown() -> None:
    b, clock = make(failures=1, cooldown=5)
    b.failure()
    assert not b.allow()
    clock.t += 4.9
    assert not b.allow()
    clock.t += 0.2
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # a second request while the probe is out
    b.success()
    assert b.state == CLOSED and b.allow() and b.allow()


def test_failed_probe_reopens_with_a_doubled_cooldown_capped() -> None:
    b, clock = make(failures=1, cooldown=5, max_cooldown=12)
    b.failure()
    clock.t += 5
    assert b.allow()
    b.failure()
    assert b.state == OPEN and abs(b.retry_in() - 10) < 1e-9
    clock.t += 10
    assert b.allow()
    b.failure()
    assert abs(b.retry_in() - 12) < 1e-9  # 20 capped at 12


def test_abandoned_probe_lets_the_next_request_probe() -> None:
    b, clock = make(failures=1, cooldown=1)
    b.failure()
    clock.t += 1
    assert b.allow()
    b.abandon()
    assert b.allow()


def test_cool_takes_the_target_out_for_the_given_time() -> None:
    b, clock = make()
    b.cool(2.0)
    assert b.state == OPEN and not b.allow()
    clock.t += 2.0
    assert b.allow()
    b.success()
    assert b.state == CLOSED
