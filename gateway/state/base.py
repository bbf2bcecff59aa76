"""The counter-backend contract shared by ``memory`` and ``redis``.

Every method is ONE atomic decision: a single Lua script in Redis, a single critical
section (no ``await`` inside) in memory. Nothing here reads a counter and writes it
back in two steps, which is how limiters overshoot under bursts.

Times are milliseconds since the epoch on the backend's clock (Redis ``TIME``), so
replicas with skewed clocks still share one notion of "now".
A backend that cannot answer raises ``StateUnavailable``; the caller applies its fail
mode (``fail_open`` / ``fail_closed``). Backends count those failures per operation in
``failures`` (for metrics) and recover by themselves once the store is back.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

__all__ = [
    "RateLimit", "RateDecision", "BudgetScope", "ReserveResult", "BudgetSpend", "StateUnavailable", "State", "FailureLog",
]


UNLIMITED = 1 << 50  # a limit no count reaches: an admission that only charges the log


class StateUnavailable(Exception):
    """The counter store did not answer in time (or at all)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit in an admission decision.

    ``window_ms > 0``: sliding-window log of that length (requests or tokens).
    ``window_ms == 0``: a fixed calendar window (monthly quota) whose counter ``key``
    already names the period and which ends at ``reset_ms``.
    """

    key: str
    limit: int
    window_ms: int
    cost: int = 1
    reset_ms: int = 0


@dataclass(slots=True)
class RateDecision:
    admitted: bool
    failing: int  # index into the limits of the first one that refused, -1 if admitted
    now_ms: int
    remaining: list[int]
    reset_ms: list[int]  # per limit: when enough capacity frees up for one more such request


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """One budget counter: ``key`` names tenant scope and period; ``expire_at_ms`` is
    when the counter may be forgotten (period end plus a grace for the admin API)."""

    key: str
    limit: int  # micro-USD
    expire_at_ms: int


@dataclass(slots=True)
class ReserveResult:
    status: str  # "ok" | "over" | "unseeded"
    failing: int = -1
    spent: int = 0
    reserved: int = 0
    now_ms: int = 0


@dataclass(slots=True)
class BudgetSpend:
    spent: int
    reserved: int
    seeded: bool


@runtime_checkable
class State(Protocol):
    failures: dict[str, int]

    async def rate_admit(self, rid: str, limits: Sequence[RateLimit]) -> RateDecision: ...
    async def rate_charge(self, rid: str, key: str, window_ms: int, amount: int) -> None:
        """Add ``amount`` to a sliding-window log without a decision (tokens counted after the answer)."""
        ...
    async def budget_reserve(self, rid: str, amount: int, scopes: Sequence[BudgetScope], ttl_ms: int) -> ReserveResult: ...
    async def budget_settle(self, rid: str, actual: int, scopes: Sequence[BudgetScope]) -> list[int]: ...
    async def budget_seed(self, scope: BudgetScope, spent: int, *, rebuild: bool = False) -> int: ...
    async def budget_get(self, key: str) -> BudgetSpend: ...
    async def inflight_acquire(self, key: str, limit: int, lease: str, ttl_ms: int) -> tuple[bool, int]: ...
    async def inflight_release(self, key: str, lease: str) -> int: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class FailureLog:
    """Counts failures per operation and logs at most one line per ``every`` seconds."""

    def __init__(self, log: logging.Logger, every: float = 5.0) -> None:
        self.counts: dict[str, int] = {}
        self._log = log
        self._every = every
        self._last = 0.0
        self.down_since: float | None = None

    def record(self, op: str, exc: BaseException) -> None:
        self.counts[op] = self.counts.get(op, 0) + 1
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        if now - self._last >= self._every:
            self._last = now
            self._log.warning("state backend unavailable during %s: %s: %s (failures so far: %s)",
                              op, type(exc).__name__, exc, self.counts)

    def ok(self) -> None:
        if self.down_since is not None:
            self._log.warning("state backend reachable again after %.1fs", time.monotonic() - self.down_since)
            self.down_since = None
