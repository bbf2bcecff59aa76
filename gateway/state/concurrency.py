"""Concurrency and rpm limits per provider key, for the router (same backends as the limits).

    slots = ProviderSlots(services.state)
    lease = await slots.acquire(target, key_id="openai:primary")   # None: at capacity, pick another
    try: ... call the provider ...
    finally: await slots.release(lease)

``target.max_in_flight`` bounds the requests in flight on that provider key across all
replicas (leases expire after ``lease_ttl`` s, so a crashed replica frees its slots);
``target.rpm`` is a sliding-window request rate for that key. A backend failure admits
(fail open: the provider's own 429s still protect it) and is counted in ``stats``.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .base import RateLimit, StateUnavailable

__all__ = ["ProviderSlots", "Lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    key: str | None  # None: nothing to release (no max_in_flight, or fail open)
    id: str


class ProviderSlots:
    def __init__(self, state: Any, *, lease_ttl: float = 600.0) -> None:
        self.state = state
        self.ttl_ms = int(lease_ttl * 1000)
        self.stats: dict[str, int] = {"acquired": 0, "busy": 0, "rate_limited": 0, "fail_open": 0}

    async def acquire(self, target: Any, key_id: str | None = None) -> Lease | None:
        name = key_id or f"{target.provider}/{target.model}"
        lease = Lease(None, uuid.uuid4().hex)
        try:
            if target.rpm:
                d = await self.state.rate_admit(lease.id, [RateLimit(f"pk:{name}:rpm", int(target.rpm), 60_000)])
                if not d.admitted:
                    self.stats["rate_limited"] += 1
                    return None
            if target.max_in_flight:
                ok, _ = await self.state.inflight_acquire(f"pk:{name}", int(target.max_in_flight), lease.id, self.ttl_ms)
                if not ok:
                    self.stats["busy"] += 1
                    return None
                lease = Lease(f"pk:{name}", lease.id)
        except StateUnavailable:
            self.stats["fail_open"] += 1
            return Lease(None, lease.id)
        self.stats["acquired"] += 1
        return lease

    async def release(self, lease: Lease | None) -> None:
        if lease is None or lease.key is None:
            return
        try:
            await self.state.inflight_release(lease.key, lease.id)
        except StateUnavailable:
            self.stats["fail_open"] += 1  # the lease expires by itself
