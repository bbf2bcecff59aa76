"""ProviderSlots: max in flight and rpm per provider key, shared by replicas."""
from __future__ import annotations

import asyncio

from gateway.call import Target
from gateway.state.concurrency import ProviderSlots


async def test_max_in_flight_and_rpm_per_provider_key(backend) -> None:
    a, b = ProviderSlots(backend), ProviderSlots(backend)  # two replicas
    target = Target("openai", "gpt-4o", max_in_flight=3)
    leases = await asyncio.gather(*(s.acquire(target, "openai:k1") for s in [a, b] * 5))
    held = [lease for lease in leases if lease is not None]
    assert len(held) == 3
    await a.release(held[0])
    assert await b.acquire(target, "openai:k1") is not None
    limited = Target("groq", "llama", rpm=2)
    got = [await a.acquire(limited) for _ in range(3)]
    assert [g is not None for g in got] == [True, True, False] and a.stats["rate_limited"] == 1
