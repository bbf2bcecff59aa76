"""Strategies: how one alias orders its targets for a request.

A strategy returns the whole order, not one pick: the router walks it, skipping
targets whose breaker is open or that are at capacity, so the next target in the
order is the fallback. Each strategy reads the live per-target numbers kept in
``TargetState`` (in flight, latency EWMA); none of them awaits anything.

* ``weighted``    — a random order drawn by weight without replacement
                    (Efraimidis–Spirakis keys ``u ** (1 / w)``): the first pick
                    lands on target *i* with probability ``w_i / Σw``.
* ``round_robin`` — rotate the list by one per request.
* ``least_busy``  — fewest requests in flight from this process first; ties rotate.
* ``latency``     — lowest EWMA of recent latency first; targets with no sample yet
                    go first so that every target gets measured.
* ``fallback``    — the configured order.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Sequence

from gateway.call import Target

from .breaker import Breaker

__all__ = ["TargetState", "Strategy", "make_strategy", "STRATEGIES"]


@dataclass(slots=True)
class TargetState:
    """What the router knows about one target (``provider/model``), shared by every alias using it."""

    name: str
    breaker: Breaker
    in_flight: int = 0
    ewma_ms: float | None = None
    requests: int = 0
    failures: int = 0
    rpm_window: list[int] = field(default_factory=lambda: [0, 0])  # [minute epoch, count] for the local rpm limit

    def observe_latency(self, ms: float, alpha: float) -> None:
        self.ewma_ms = ms if self.ewma_ms is None else self.ewma_ms + alpha * (ms - self.ewma_ms)



class Strategy:
    """Base: the configured order (``fallback``)."""

    def __init__(self, states: dict[str, TargetState], rng: random.Random) -> None:
        self.states = states
        self.rng = rng

    def order(self, targets: Sequence[Target]) -> list[Target]:
        return list(targets)


class Weighted(Strategy):
    def order(self, targets: Sequence[Target]) -> list[Target]:
        n = len(targets)
        if n == 1:
            return list(targets)
        if n == 2:  # the common case, one draw: P(first = a) = w_a / (w_a + w_b)
            a, b = targets
            if a.weight <= 0 or b.weight <= 0:
                return [t for t in targets if t.weight > 0]
            return [a, b] if self.rng.random() * (a.weight + b.weight) < a.weight else [b, a]
        rnd = self.rng.random
        keyed = [(rnd() ** (1.0 / t.weight), t) for t in targets if t.weight > 0]
        keyed.sort(key=_first, reverse=True)
        return [t for _, t in keyed]


class RoundRobin(Strategy):
    def __init__(self, states: dict[str, TargetState], rng: random.Random) -> None:
        super().__init__(states, rng)
        self._next = itertools.count()

    def order(self, targets: Sequence[Target]) -> list[Target]:
        n = len(targets)
        if n == 1:
            return list(targets)
        start = next(self._next) % n
        return [*targets[start:], *targets[:start]]


class LeastBusy(RoundRobin):
    def order(self, targets: Sequence[Target]) -> list[Target]:
        rotated = super().order(targets)  # rotation breaks ties fairly
        states = self.states
        return sorted(rotated, key=lambda t: states[t.name].in_flight)


class Latency(RoundRobin):
    def order(self, targets: Sequence[Target]) -> list[Target]:
        rotated = super().order(targets)
        states = self.states
        return sorted(rotated, key=lambda t: -1.0 if states[t.name].ewma_ms is None else states[t.name].ewma_ms)


def _first(pair: tuple[float, Target]) -> float:
    return pair[0]


STRATEGIES: dict[str, type[Strategy]] = {
    "weighted": Weighted,
    "round_robin": RoundRobin,
    "least_busy": LeastBusy,
    "latency": Latency,
    "fallback": Strategy,
}


def make_strategy(name: str, states: dict[str, TargetState], rng: random.Random) -> Strategy:
    try:
        return STRATEGIES[name](states, rng)
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r} (known: {', '.join(STRATEGIES)})") from None
