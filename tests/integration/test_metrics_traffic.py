"""GET /metrics against real traffic: valid exposition (promtool), values equal to what was sent and stored."""
from __future__ import annotations

import asyncio
import logging
import time
import shutil
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from gateway.http.keys import SERVICES
from gateway.plugin import Services
from gateway.pricing import Pricing
from gateway.server import build_app
from tests.fixtures.gateway import base_config

PIPELINE = [{"metrics": {}}, {"router": {}}]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and all(dict(labels).get(k) == val for k, val in match.items()))


async def _traffic(base: str, n_json: int, n_stream: int, n_fail: int) -> None:
    body = {"model": "mock", "messages": [{"role": "user", "content": "count me please"}]}
    async with aiohttp.ClientSession() as s:
        async def one(extra: dict, headers: dict | None = None) -> None:
            async with s.post(f"{base}/v1/chat/completions", json={**body, **extra}, headers=headers or {}) as r:
                await r.read()

        await asyncio.gather(
            *(one({}) for _ in range(n_json)),
            *(one({"stream": True}) for _ in range(n_stream)),
            *(one({}, {"x-mock-status": "400"}) for _ in range(n_fail)),
        )


def _promtool(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIPPED promtool assertion: promtool not installed (apt-get install prometheus; `make system-deps`)")
        return
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert r.returncode == 0, f"promtool check metrics failed:\n{r.stdout.decode()}\n{r.stderr.decode()}"


def test_live_metrics_pass_promtool_and_match_the_traffic_and_the_store(gateway_factory, tmp_path: Path):
    gw = gateway_factory(base_config(tmp_path, pipeline=PIPELINE))
    asyncio.run(_traffic(gw.url, n_json=30, n_stream=10, n_fail=5))
    deadline = time.monotonic() + 5
    while True:  # usage rows are acknowledged once journalled; their group commits follow within ms
        with urllib.request.urlopen(f"{gw.url}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            text = r.read().decode()
        m = _samples(text)
        if _sum(m, "watchllm_usage_batch_rows_sum") >= 45 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _promtool(text)
    assert _sum(m, "watchllm_requests_total") == 45
    assert _sum(m, "watchllm_requests_total", status="200", model="mock", provider="mock", cache="none") == 40
    assert _sum(m, "watchllm_requests_total", status="400") == 5
    assert _sum(m, "watchllm_time_to_first_token_seconds_count") == 10
    assert _sum(m, "watchllm_request_duration_seconds_count") == 45
    assert _sum(m, "watchllm_requests_in_flight") == 0
    assert _sum(m, "watchllm_usage_batch_rows_sum") == 45  # every row went through a group commit
    assert "request_id" not in text and "lgw_" not in text

    assert gw.stop() == 0
    db = sqlite3.connect(tmp_path / "watchllm.db")
    rows, prompt, completion = db.execute("SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM usage").fetchone()
    assert rows == 45
    assert _sum(m, "watchllm_tokens_total", direction="prompt") == prompt
    assert _sum(m, "watchllm_tokens_total", direction="completion") == completion


async def test_cost_counter_equals_the_stores_cost_sum(aiohttp_client, tmp_path: Path):
    cfg = parse_config(base_config(tmp_path, pipeline=PIPELINE), "<test>")
    services = Services(config=cfg, log=logging.getLogger("test"), pricing=Pricing({"mock-1": {"input": 1.25, "output": 3.75}}))
    client = await aiohttp_client(build_app(cfg, services=services))
    await _traffic(str(client.make_url("")).rstrip("/"), n_json=40, n_stream=15, n_fail=3)
    text = await (await client.get("/metrics")).text()
    m = _samples(text)
    store = client.app[SERVICES].store
    assert await client.app[SERVICES].usage.flush(timeout=5)  # acknowledged rows are committed within ms
    requests, cost_micros = await store.fetchone("SELECT COUNT(*), SUM(cost_micros) FROM usage")
    assert requests == 58 == _sum(m, "watchllm_requests_total")
    assert cost_micros > 0
    assert _sum(m, "watchllm_cost_usd_total") == pytest.approx(cost_micros / 1e6, abs=1e-9)


async def test_metrics_route_without_the_middleware_is_404_with_a_hint(aiohttp_client, tmp_path: Path):
    cfg = parse_config(base_config(tmp_path), "<test>")
    client = await aiohttp_client(build_app(cfg))
    r = await client.get("/metrics")
    assert r.status == 404 and "pipeline" in (await r.json())["error"]["message"]
