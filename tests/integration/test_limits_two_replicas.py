"""Two gateway processes sharing one redis-server: limits hold exactly across replicas."""
from __future__ import annotations

import asyncio

import aiohttp

from tests.fixtures.gateway import base_config


async def test_burst_across_two_replicas_admits_exactly_the_limit(gateway_factory, redis_server, tmp_path) -> None:
    cfg = base_config(tmp_path)
    cfg["state"] = {"url": redis_server.url, "timeout": 0.5}
    # no auth in this pipeline: every call is anonymous and limited per client IP (127.0.0.1)
    cfg["pipeline"] = [{"ratelimit": {"ip_rpm": 20}}, {"router": {}}]
    a = gateway_factory(cfg, name="a")
    b = gateway_factory(cfg, name="b")
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    start = asyncio.Event()

    async def one(session: aiohttp.ClientSession, gw) -> tuple[int, dict[str, str], dict]:
        await start.wait()
        async with session.post(f"{gw.base_url}/chat/completions", json=body) as r:
            return r.status, dict(r.headers), await r.json()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        # warm both gateways' Redis pools so the burst measures the decision, not connects
        tasks = [asyncio.create_task(one(session, gw)) for gw in [a, b] * 50]
        await asyncio.sleep(0.2)
        start.set()
        results = await asyncio.gather(*tasks)
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == 20 and statuses.count(429) == 80, statuses
    for status, headers, payload in results:
        assert headers["X-RateLimit-Limit"] == "20"
        assert int(headers["X-RateLimit-Reset"]) > 0
        if status == 429:
            assert headers["X-RateLimit-Remaining"] == "0" and int(headers["Retry-After"]) >= 1
            assert payload["error"]["code"] == "rate_limit_exceeded"
            assert payload["error"]["details"]["limit"] == 20
