"""Circuit breaker per target: closed → open → half-open → closed.

Why per target (``provider/model``) and not per provider: one model of a provider can be
overloaded while its siblings answer. The breaker opens after ``failures`` consecutive
failures (Envoy's ``consecutive_5xx``) or when the failure ratio over the last
``window`` seconds reaches ``failure_rate`` with at least ``min_requests`` outcomes
(LiteLLM's percentage rule, Portkey's ``failure_threshold_percentage``). After the
cool-down one request is let through as a probe (half-open); its success closes the
breaker, its failure re-opens it with a doubled cool-down (capped), like Envoy's
ejection time × times ejected.

The failure-rate window is a ring of one-second-ish buckets, so recording an outcome
is O(1) and memory does not grow with traffic. Everything runs on the event loop with
no ``await`` between a check and its update, so no lock is needed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["BreakerSettings", "Breaker", "CLOSED", "OPEN", "HALF_OPEN"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open the breaker (0 disables the rule)
    failure_rate: float = 0.5  # ratio over the window that opens it (0 disables the rule)
    window: float = 30.0  # seconds
    min_requests: int = 10  # outcomes in the window before the ratio rule applies
    cooldown: float = 5.0  # seconds open before the half-open probe
    max_cooldown: float = 60.0


class Breaker:
    __slots__ = ("s", "state", "consecutive", "opened_at", "open_until", "times_opened", "probing",
                 "_clock", "_width", "_epochs", "_total", "_failed", "last_error")

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self._clock = clock
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.open_until = 0.0
        self.times_opened = 0
        self.probing = False
        self.last_error: str | None = None
        self._width = max(settings.window / _BUCKETS, 1e-3)
        self._epochs = [-1] * _BUCKETS
        self._total = [0] * _BUCKETS
        self._failed = [0] * _BUCKETS

    # decisions ---------------------------------------------------------------------
    def allow(self) -> bool:
        """May a request go to this target now? In half-open, only the first caller (the probe) may."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() < self.open_until:
                return False
            self.state = HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until this target may be tried again (0 when it may be tried now)."""
        if self.state == OPEN:
            return max(0.0, self.open_until - self._clock())
        return 0.0

    # outcomes ----------------------------------------------------------------------
    def success(self) -> None:
        self.consecutive = 0
        if self.state != CLOSED:
            self._close()
            return
        self._count(False)
    def failure(self, error: str | None = None) -> None:
        self.last_error = error
        if self.state == HALF_OPEN:
            self._open(self.s.cooldown * (2 ** self.times_opened))
            return
        if self.state == OPEN:
            return
        self.consecutive += 1
        total, failed = self._count(True)
        s = self.s
        if (s.failures and self.consecutive >= s.failures) or (
            s.failure_rate and total >= s.min_requests and failed >= s.failure_rate * total
        ):
            self._open(s.cooldown)

    def abandon(self) -> None:
        """A request let through as the probe ended with no verdict (cancelled): let another probe."""
        if self.state == HALF_OPEN:
            self.probing = False

    def cool(self, seconds: float, reason: str = "cooled") -> None:
        """Take the target out for ``seconds`` (a 429 with Retry-After), whatever the counts say."""
        until = self._clock() + seconds
        if self.state == OPEN and self.open_until >= until:
            return
        self.state = OPEN
        self.opened_at = self._clock()
        self.open_until = until
        self.probing = False
        self.last_error = reason

    # internals ---------------------------------------------------------------------
    def _open(self, cooldown: float) -> None:
        now = self._clock()
        self.state = OPEN
        self.opened_at = now
        self.open_until = now + min(cooldown, self.s.max_cooldown)
        self.times_opened += 1
        self.probing = False

    def _close(self) -> None:
        self.state = CLOSED
        self.times_opened = 0
        self.consecutive = 0
        self.probing = False
        self._epochs = [-1] * _BUCKETS
        self._total = [0] * _BUCKETS
        self._failed = [0] * _BUCKETS

    def _count(self, failed: bool) -> tuple[int, int]:
        epoch = int(self._clock() / self._width)
        i = epoch % _BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i], self._total[i], self._failed[i] = epoch, 0, 0
        self._total[i] += 1
        if not failed:
            return 0, 0  # only a failure can open the breaker: skip the sum
        self._failed[i] += 1
        oldest = epoch - _BUCKETS + 1
        total = failed_n = 0
        for j in range(_BUCKETS):
            if self._epochs[j] >= oldest:
                total += self._total[j]
                failed_n += self._failed[j]
        return total, failed_n

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state, "consecutive_failures": self.consecutive}
        if self.state == OPEN:
            out["retry_in_s"] = round(self.retry_in(), 3)
        if self.last_error:
            out["last_error"] = self.last_error
        return out
