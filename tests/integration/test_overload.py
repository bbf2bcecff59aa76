"""At 3× capacity the excess is shed at once (503 + Retry-After) and admitted requests keep their latency."""
from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.fixtures.gateway import base_config


async def test_excess_is_shed_quickly_and_admitted_latency_holds(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, server={"max_in_flight": 8, "shutdown_timeout": 5}))
    body = {"model": "mock", "messages": [{"role": "user", "content": "slow"}]}
    headers = {"x-mock-latency-ms": "400"}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        async def one() -> tuple[int, float, str | None]:
            t0 = time.perf_counter()
            async with s.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
                data = await r.json()
                return r.status, time.perf_counter() - t0, (data.get("error") or {}).get("code") if r.status != 200 else r.headers.get("Retry-After")

        async def warm() -> None:  # open 24 pooled connections first: measure shedding, not TCP connects
            async with s.post(f"{gw.base_url}/chat/completions", json=body) as r:
                await r.read()

        await asyncio.gather(*[warm() for _ in range(24)])
        unloaded = [await one() for _ in range(3)]
        base = max(t for _, t, _ in unloaded)
        results = await asyncio.gather(*[one() for _ in range(24)])  # 3× capacity
    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(ok) == 8 and len(shed) == 16
    assert all(code == "service_unavailable" for _, _, code in shed)
    shed_times = sorted(t for _, t, _ in shed)
    p99 = shed_times[min(len(shed_times) - 1, int(len(shed_times) * 0.99))]
    print(f"\nO1: shed {len(shed)}/24, 503 p50 {shed_times[len(shed_times) // 2] * 1000:.1f} ms p99 {p99 * 1000:.1f} ms; admitted max {max(t for _, t, _ in ok) * 1000:.0f} ms"
          f" vs unloaded {base * 1000:.0f} ms")
    assert p99 < 0.05, shed_times  # refused at once, not queued behind the 400 ms requests
    assert max(t for _, t, _ in ok) <= 2 * base
