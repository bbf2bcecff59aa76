"""In-process counters (one gateway process). Same semantics as the Redis scripts.

Each method body runs without an ``await``, so on one event loop it is a critical
section: the check and the update cannot interleave with another request.
The clock is injectable (``clock()`` returns epoch seconds) for deterministic tests.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence

from .base import BudgetScope, BudgetSpend, RateDecision, RateLimit, ReserveResult

__all__ = ["MemoryState"]


class _Log:
    """Sliding-window log: admission times (ms) and costs, oldest first, plus the running total.

    Two deques of ints rather than one of ``(ts, cost)`` tuples: ints are not tracked by the cyclic
    garbage collector, tuples are until a collection has looked at them once. At 3,000 req/s with three
    windowed limits per request, the tuples were what filled the youngest generation, so every gen-0
    collection walked ~20,000 of them (2-5 ms with the event loop stopped, every ~2 s). Admissions in
    the same millisecond share one entry.
    """

    __slots__ = ("times", "costs", "total", "expire_at")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.costs: deque[int] = deque()
        self.total = 0
        self.expire_at = 0

    def add(self, now: int, cost: int) -> None:
        times = self.times
        if times and times[-1] == now:
            self.costs[-1] += cost
        else:
            times.append(now)
            self.costs.append(cost)
        self.total += cost

    def prune(self, cutoff: int) -> None:
        times = self.times
        while times and times[0] <= cutoff:
            times.popleft()
            self.total -= self.costs.popleft()

    def reset_for(self, need: int, window: int, now: int) -> int:
        acc = 0
        for ts, cost in zip(self.times, self.costs):
            acc += cost
            if acc >= need:
                return ts + window
        return now + window


class _Budget:
    __slots__ = ("spent", "reserved", "seeded", "holds", "expire_at", "next_expiry")

    def __init__(self) -> None:
        self.spent = 0
        self.reserved = 0
        self.seeded = False
        self.holds: dict[str, tuple[int, int]] = {}  # rid -> (amount, expires_ms)
        self.expire_at = 0
        self.next_expiry = 0  # no hold expires before this (ms): the holds are scanned only then


class MemoryState:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.failures: dict[str, int] = {}
        self._logs: dict[str, _Log] = {}
        self._fixed: dict[str, tuple[int, int]] = {}  # key -> (count, expire_ms)
        self._budgets: dict[str, _Budget] = {}
        self._leases: dict[str, dict[str, int]] = {}
        self._ops = 0

    def _now(self) -> int:
        return round(self.clock() * 1000)

    def _gc(self, now: int) -> None:
        """Drop idle counters now and then so memory follows the active tenants."""
        self._ops += 1
        if self._ops % 4096:
            return
        for k in [k for k, v in self._logs.items() if v.expire_at < now]:
            del self._logs[k]
        for k in [k for k, v in self._fixed.items() if v[1] < now]:
            del self._fixed[k]
        for k in [k for k, v in self._budgets.items() if v.expire_at and v.expire_at < now]:
            del self._budgets[k]

    # rate limits -------------------------------------------------------------
    def _log(self, key: str) -> _Log:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        return log

    async def rate_admit(self, rid: str, limits: Sequence[RateLimit]) -> RateDecision:
        now = self._now()
        self._gc(now)
        logs = self._logs
        seen: list[tuple[RateLimit, _Log | None, int]] = []  # each limit with its log and what it has used
        failing = -1
        for lim in limits:
            if lim.window_ms > 0:
                log = logs.get(lim.key)
                if log is None:
                    log = logs[lim.key] = _Log()
                log.prune(now - lim.window_ms)
                u = log.total
            else:
                log = None
                count, exp = self._fixed.get(lim.key, (0, 0))
                u = count if exp > now else 0
            if failing < 0 and u + lim.cost > lim.limit:
                failing = len(seen)
            seen.append((lim, log, u))
        admitted = failing < 0
        remaining: list[int] = []
        resets: list[int] = []
        for i, (lim, log, u) in enumerate(seen):
            if admitted:
                u += lim.cost
                if log is not None:
                    log.add(now, lim.cost)
                    log.expire_at = now + lim.window_ms + 1000
                else:
                    self._fixed[lim.key] = (u, lim.reset_ms + 86_400_000)
            if log is not None:
                need = u + lim.cost - lim.limit if (admitted or i == failing) else 1
                resets.append(log.reset_for(need if need > 1 else 1, lim.window_ms, now))
            else:
                resets.append(lim.reset_ms)
            remaining.append(lim.limit - u if lim.limit > u else 0)
        return RateDecision(admitted, failing, now, remaining, resets)

    async def rate_charge(self, rid: str, key: str, window_ms: int, amount: int) -> None:
        now = self._now()
        log = self._log(key)
        log.add(now, amount)
        log.expire_at = max(log.expire_at, now + window_ms + 1000)

    # budgets -----------------------------------------------------------------
    def _budget(self, key: str) -> _Budget:
        b = self._budgets.get(key)
        if b is None:
            b = self._budgets[key] = _Budget()
        return b

    async def budget_reserve(self, rid: str, amount: int, scopes: Sequence[BudgetScope], ttl_ms: int) -> ReserveResult:
        now = self._now()
        for i, s in enumerate(scopes):
            b = self._budget(s.key)
            if not b.seeded:
                return ReserveResult("unseeded", i, now_ms=now)
            if b.holds and b.next_expiry <= now:  # a scan per expiry, not per request
                for r in [r for r, (_, exp) in b.holds.items() if exp <= now]:
                    b.reserved -= b.holds.pop(r)[0]
                b.next_expiry = min((exp for _, exp in b.holds.values()), default=0)
            if b.spent + b.reserved + amount > s.limit:
                return ReserveResult("over", i, b.spent, b.reserved, now)
        for s in scopes:
            b = self._budgets[s.key]
            b.reserved += amount
            if not b.holds or now + ttl_ms < b.next_expiry:
                b.next_expiry = now + ttl_ms
            b.holds[rid] = (amount, now + ttl_ms)
            b.expire_at = s.expire_at_ms
        return ReserveResult("ok", now_ms=now)

    async def budget_settle(self, rid: str, actual: int, scopes: Sequence[BudgetScope]) -> list[int]:
        out: list[int] = []
        for s in scopes:
            b = self._budget(s.key)
            hold = b.holds.pop(rid, None)
            if hold is not None:
                b.reserved -= hold[0]
            if actual > 0:
                b.spent += actual
                b.expire_at = s.expire_at_ms
            out.append(b.spent)
        return out

    async def budget_seed(self, scope: BudgetScope, spent: int, *, rebuild: bool = False) -> int:
        b = self._budget(scope.key)
        if not rebuild:
            if b.seeded:
                return b.spent
            spent = max(spent, b.spent)
        b.spent, b.seeded, b.expire_at = spent, True, scope.expire_at_ms
        return spent

    async def budget_get(self, key: str) -> BudgetSpend:
        b = self._budgets.get(key)
        if b is None:
            return BudgetSpend(0, 0, False)
        return BudgetSpend(b.spent, b.reserved, b.seeded)

    # provider concurrency ----------------------------------------------------
    async def inflight_acquire(self, key: str, limit: int, lease: str, ttl_ms: int) -> tuple[bool, int]:
        now = self._now()
        leases = self._leases.setdefault(key, {})
        for k in [k for k, exp in leases.items() if exp <= now]:
            del leases[k]
        if len(leases) >= limit:
            return False, len(leases)
        leases[lease] = now + ttl_ms
        return True, len(leases)

    async def inflight_release(self, key: str, lease: str) -> int:
        leases = self._leases.get(key)
        if not leases:
            return 0
        leases.pop(lease, None)
        return len(leases)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
