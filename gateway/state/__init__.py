"""Counter backends for limits, budgets and provider concurrency, shared across replicas.

``open_state(config.state)`` picks the backend from ``state.url``:
``memory://`` (default, one process) or ``redis://host:port/db`` / ``rediss://`` / ``unix://``.
See ``base.State`` for the contract and docs/limits.md for the semantics.
"""
from __future__ import annotations

import logging
from typing import Any

from .base import BudgetScope, BudgetSpend, RateDecision, RateLimit, ReserveResult, State, StateUnavailable
from .memory import MemoryState

__all__ = [
    "open_state", "State", "StateUnavailable", "MemoryState", "RateLimit", "RateDecision",
    "BudgetScope", "BudgetSpend", "ReserveResult",
]

log = logging.getLogger("watchllm.state")


async def open_state(config: Any) -> State:
    """Build the backend named by ``config.url`` (a ``StateConfig``). Redis is pinged once:
    a Redis that is down at start-up is logged, not fatal; each limit's fail mode applies
    until it answers."""
    url = getattr(config, "url", None) or "memory://"
    if url.startswith("memory:"):
        return MemoryState()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisState

        state = RedisState(url, timeout=float(getattr(config, "timeout", 0.05)),
                           max_connections=int(getattr(config, "max_connections", 64)))
        try:
            await state.ping()
        except StateUnavailable as exc:
            log.warning("state: Redis at %s not reachable at start-up (%s); limits apply their fail modes", _safe(url), exc)
        return state
    raise ValueError(f"state.url: unsupported scheme in {_safe(url)!r} (expected memory:// or redis://)")


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
