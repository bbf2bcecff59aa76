"""Retry policy: what is worth another attempt, how long to wait, and how many retries may run.

* Back-off is Envoy's fully jittered exponential: ``uniform(0, min(cap, base·(2^n − 1)))``
  (base 25 ms, cap 250 ms by default). It is applied only before a target is tried
  *again* in the same request; moving on to a target not yet tried costs no wait,
  because the point of waiting is to spare the target that just failed.
* ``Retry-After`` (429/503): in ``fallback`` mode the target is cooled for that long and
  the next target is tried at once; in ``honour`` mode the router waits that long and
  retries the same target, if the value is at most ``max_retry_after`` and the wait fits
  in the request deadline and in ``max_retry_wait`` (Portkey caps total wait at 60 s);
  otherwise it falls back.
* Retry budget (Envoy ``retry_budget``): at most ``max(budget_min, budget_percent% of
  requests in flight)`` same-target retries run at once, so a fleet-wide outage cannot
  multiply upstream load. First attempts on distinct targets (fallbacks) are not
  counted: they are bounded by ``max_attempts`` and taken out by the breakers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.errors import ProviderError

__all__ = ["RetryPolicy", "RetryBudget"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_base: float = 0.025  # seconds
    backoff_cap: float = 0.25
    retry_after_mode: str = "fallback"  # "fallback" | "honour"
    max_retry_after: float = 5.0
    max_retry_wait: float = 60.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Jittered wait before retry number ``retry`` (1-based) of a target already tried."""
        return rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2 ** retry - 1)))

    def honour_wait(self, err: ProviderError, remaining: float, waited: float) -> float | None:
        """Seconds to wait before retrying the same target, or None to fall back instead."""
        ra = err.retry_after
        if self.retry_after_mode != "honour" or ra is None:
            return None
        if ra > self.max_retry_after or ra >= remaining or waited + ra > self.max_retry_wait:
            return None
        return max(0.0, ra)

    @staticmethod
    def retryable(err: ProviderError) -> bool:
        return bool(err.retryable)


class RetryBudget:
    """Counts requests and same-target retries in flight in this process."""

    __slots__ = ("percent", "minimum", "active", "retrying", "denied")

    def __init__(self, percent: float = 20.0, minimum: int = 3) -> None:
        self.percent = percent
        self.minimum = minimum
        self.active = 0
        self.retrying = 0
        self.denied = 0

    def try_acquire(self) -> bool:
        if self.percent <= 0:
            return True
        if self.retrying >= max(self.minimum, int(self.active * self.percent / 100.0)):
            self.denied += 1
            return False
        self.retrying += 1
        return True

    def release(self) -> None:
        self.retrying -= 1
