"""Counters in Redis shared by every gateway replica: one Lua script per decision.

Scripts live in ``lua/`` (one file per decision) and run with EVALSHA; after a Redis restart
(NOSCRIPT) the call is sent again with EVAL, which loads the script. Time comes from Redis ``TIME``.

Connection policy: the lean pipelined client of ``resp.py`` (one connection per process, every
call written to it in turn; redis-py cost ~85 us of CPU per call, 3-4 calls per request), no
client-side retries, ``timeout`` per call (a stalled Redis costs about ``timeout`` before the
caller's fail mode applies; a stopped one refuses at once), at least 0.5 s to connect. A timeout
or a lost connection drops the connection; the next call after the fail-fast window makes a new
one: recovery needs no restart.

Fail fast: after a timeout or connection error, decisions fail at once for ``FAIL_FAST_S``
(0.2 s) instead of each waiting out the timeout; then the next call probes Redis again. A
request makes two decisions (rate limit, budget), so without this a stalled Redis would add
twice the timeout to every request; with it the added latency is at most one timeout, paid
by one probe per window (measured: 105 → ~55 ms worst case at timeout 50 ms). The price: one
Redis hiccup applies the fail modes for up to 0.2 s (a fail-closed budget answers 503).

Keys are not hash-tagged: the multi-key scripts assume one Redis (or a primary with
replicas), not Redis Cluster.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from importlib import resources
from typing import Any, Callable, Sequence

from .base import UNLIMITED, BudgetScope, BudgetSpend, FailureLog, RateDecision, RateLimit, ReserveResult, StateUnavailable
from .resp import ReplyError, RespClient

__all__ = ["RedisState", "SCRIPTS"]

log = logging.getLogger("watchllm.state")

SCRIPTS = ("rate_admit", "budget_reserve", "budget_settle", "budget_seed", "inflight_acquire", "inflight_release")

_CLOCKED = frozenset({"rate_admit", "budget_reserve", "inflight_acquire"})
FAIL_FAST_S = 0.2  # see the module docstring


def _load(name: str) -> str:
    return resources.files("gateway.state").joinpath("lua", f"{name}.lua").read_text()


class RedisState:
    def __init__(self, url: str, *, timeout: float = 0.05, max_connections: int = 64, prefix: str = "wl:",
                 clock: Callable[[], float] | None = None) -> None:
        """``max_connections`` is accepted for old configs and unused: calls share one pipelined connection."""
        self.url = url
        self.clock = clock  # tests only: epoch seconds passed to the scripts instead of Redis TIME
        self.timeout = timeout
        self.prefix = prefix
        self.client = RespClient(url, timeout=timeout, connect_timeout=max(timeout, 0.5))
        self._scripts = {name: _load(name) for name in SCRIPTS}
        self._sha = {name: hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest() for name, body in self._scripts.items()}
        self._fail = FailureLog(log)
        self.failures = self._fail.counts
        self._fail_fast_until = 0.0

    async def _run(self, op: str, keys: list[str], args: list[Any]) -> Any:
        if self.clock is not None and op in _CLOCKED:
            keys, args = [*keys, "__clock__"], [*args, round(self.clock() * 1000)]
        if self._fail_fast_until and time.monotonic() < self._fail_fast_until:
            exc = StateUnavailable(f"{op}: Redis unavailable (failing fast after an error)")
            self._fail.record(op, exc)
            raise exc
        try:
            try:
                out = await self.client.call("EVALSHA", self._sha[op], len(keys), *keys, *args)
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                out = await self.client.call("EVAL", self._scripts[op], len(keys), *keys, *args)  # loads it
        except ReplyError as exc:  # the command or script failed; the connection is fine
            self._fail.record(op, exc)
            raise StateUnavailable(f"{op}: {exc}") from exc
        except (OSError, asyncio.TimeoutError) as exc:  # ConnectionError and TimeoutError included
            self._fail_fast_until = time.monotonic() + FAIL_FAST_S
            self._fail.record(op, exc)
            raise StateUnavailable(f"{op}: {type(exc).__name__}: {exc}") from exc
        self._fail_fast_until = 0.0
        if self._fail.down_since is not None:
            self._fail.ok()
        return out

    def k(self, key: str) -> str:
        return self.prefix + key

    # rate limits -------------------------------------------------------------
    async def rate_admit(self, rid: str, limits: Sequence[RateLimit]) -> RateDecision:
        keys: list[str] = []
        args: list[Any] = [rid, len(limits)]
        for lim in limits:
            keys += [self.prefix + "rl:" + lim.key, self.prefix + "rl:" + lim.key + ":t"]
            args += [lim.limit, lim.window_ms, lim.cost, lim.reset_ms]
        out = await self._run("rate_admit", keys, args)
        rest = out[3:]
        return RateDecision(bool(out[0]), int(out[1]) - 1, int(out[2]),
                            [int(x) for x in rest[0::2]], [int(x) for x in rest[1::2]])

    async def rate_charge(self, rid: str, key: str, window_ms: int, amount: int) -> None:
        # An "unlimited" limit on the same log always admits: one script call, as for an admission.
        await self.rate_admit(rid, [RateLimit(key, UNLIMITED, window_ms, amount)])

    # budgets -----------------------------------------------------------------
    def _bkeys(self, scopes: Sequence[BudgetScope]) -> list[str]:
        keys: list[str] = []
        for s in scopes:
            keys += [self.prefix + "b:" + s.key, self.prefix + "b:" + s.key + ":r"]
        return keys

    async def budget_reserve(self, rid: str, amount: int, scopes: Sequence[BudgetScope], ttl_ms: int) -> ReserveResult:
        args: list[Any] = [rid, amount, ttl_ms, len(scopes)]
        for s in scopes:
            args += [s.limit, s.expire_at_ms]
        out = await self._run("budget_reserve", self._bkeys(scopes), args)
        if out[0] == 1:
            return ReserveResult("ok", now_ms=int(out[1]))
        status = "over" if out[0] == 0 else "unseeded"
        return ReserveResult(status, int(out[1]) - 1, int(out[2]), int(out[3]), int(out[4]))

    async def budget_settle(self, rid: str, actual: int, scopes: Sequence[BudgetScope]) -> list[int]:
        args: list[Any] = [rid, actual, len(scopes), *(s.expire_at_ms for s in scopes)]
        out = await self._run("budget_settle", self._bkeys(scopes), args)
        return [int(x) for x in out]

    async def budget_seed(self, scope: BudgetScope, spent: int, *, rebuild: bool = False) -> int:
        out = await self._run("budget_seed", [self.prefix + "b:" + scope.key],
                              [spent, scope.expire_at_ms, "rebuild" if rebuild else "seed"])
        return int(out)

    async def budget_get(self, key: str) -> BudgetSpend:
        try:
            spent, reserved, seeded = await self.client.call("HMGET", self.prefix + "b:" + key, "spent", "reserved", "seeded")
        except (ReplyError, OSError, asyncio.TimeoutError) as exc:
            self._fail.record("budget_get", exc)
            raise StateUnavailable(f"budget_get: {exc}") from exc
        return BudgetSpend(int(spent or 0), int(reserved or 0), seeded is not None)

    # provider concurrency ----------------------------------------------------
    async def inflight_acquire(self, key: str, limit: int, lease: str, ttl_ms: int) -> tuple[bool, int]:
        out = await self._run("inflight_acquire", [self.prefix + "if:" + key], [limit, ttl_ms, lease])
        return bool(out[0]), int(out[1])

    async def inflight_release(self, key: str, lease: str) -> int:
        return int(await self._run("inflight_release", [self.prefix + "if:" + key], [lease]))

    # lifecycle ---------------------------------------------------------------
    async def ping(self) -> None:
        try:
            await self.client.call("PING")
        except (ReplyError, OSError, asyncio.TimeoutError) as exc:
            self._fail.record("ping", exc)
            raise StateUnavailable(f"ping: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()
