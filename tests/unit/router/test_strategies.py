"""Strategies order targets; the router's first pick is the first of the order."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.call import Target
from plugins.middleware.router.breaker import Breaker, BreakerSettings
from plugins.middleware.router.strategies import TargetState, make_strategy


def _states(*targets: Target) -> dict[str, TargetState]:
    return {t.name: TargetState(t.name, Breaker(BreakerSettings())) for t in targets}


A, B, C = Target("a", "m", weight=3), Target("b", "m", weight=1), Target("c", "m", weight=0)


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 1234])
def test_weighted_3_to_1_over_1000_requests_lands_within_5_percent(seed: int) -> None:
    s = make_strategy("weighted", _states(A, B), random.Random(seed))
    first = Counter(s.order([A, B])[0].provider for _ in range(1000))
    assert abs(first["a"] / 1000 - 0.75) <= 0.05, first
    assert first["a"] + first["b"] == 1000


def test_weighted_order_contains_every_positive_weight_target_once_and_skips_zero_weight() -> None:
    s = make_strategy("weighted", _states(A, B, C), random.Random(0))
    for _ in range(50):
        order = s.order([A, B, C])
        assert sorted(t.provider for t in order) == ["a", "b"]


def test_weighted_second_place_is_the_other_target_so_it_is_the_fallback() -> None:
    s = make_strategy("weighted", _states(A, B), random.Random(5))
    for _ in range(100):
        assert {t.provider for t in s.order([A, B])} == {"a", "b"}


def test_round_robin_rotates_by_one_per_request() -> None:
    s = make_strategy("round_robin", _states(A, B, C), random.Random(0))
    firsts = [s.order([A, B, C])[0].provider for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]


def test_least_busy_puts_the_target_with_fewest_in_flight_first() -> None:
    states = _states(A, B)
    s = make_strategy("least_busy", states, random.Random(0))
    states[A.name].in_flight = 4
    states[B.name].in_flight = 1
    assert [t.provider for t in s.order([A, B])] == ["b", "a"]
    states[B.name].in_flight = 9
    assert s.order([A, B])[0].provider == "a"


def test_least_busy_ties_rotate() -> None:
    s = make_strategy("least_busy", _states(A, B), random.Random(0))
    assert {s.order([A, B])[0].provider for _ in range(4)} == {"a", "b"}


def test_latency_prefers_lowest_ewma_and_measures_unsampled_targets_first() -> None:
    states = _states(A, B, C)
    s = make_strategy("latency", states, random.Random(0))
    states[A.name].observe_latency(200, 0.3)
    states[B.name].observe_latency(50, 0.3)
    assert s.order([A, B, C])[0].provider == "c"  # never measured
    states[C.name].observe_latency(120, 0.3)
    assert [t.provider for t in s.order([A, B, C])] == ["b", "c", "a"]
    for _ in range(20):
        states[B.name].observe_latency(500, 0.3)  # b got slow: the EWMA follows
    assert s.order([A, B, C])[0].provider == "c"


def test_fallback_keeps_the_configured_order() -> None:
    s = make_strategy("fallback", _states(A, B, C), random.Random(0))
    assert [t.provider for t in s.order([B, A, C])] == ["b", "a", "c"]


def test_unknown_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown routing strategy"):
        make_strategy("fastest", {}, random.Random(0))
