"""Usage and analytics admin API: org scoping, filters, summaries, dashboard, series, streamed CSV export."""
from __future__ import annotations

import csv
import io
import time
import tracemalloc
from typing import Any

import pytest
from aiohttp import web

from gateway.admin import analytics, usage as usage_routes
from gateway.store.usage import COLUMNS
from tests.unit.admin.kit import h, login, make_app, make_env


def _row(i: int, project_id: str, *, created_at: float, model: str = "mock", cost: int = 1000, status: int = 200,
         cached: str | None = None) -> tuple[Any, ...]:
    r = {c: None for c in COLUMNS}
    r.update(id=f"req_{project_id}_{i}", project_id=project_id, key_id="key_1", endpoint="chat.completions",
             model_requested=model, model_served=model + "-1", provider="mock", attempts=1, prompt_tokens=10,
             completion_tokens=5, cost_micros=0 if cached else cost, cached=cached, tokens_saved=15 if cached else 0,
             cost_saved_micros=cost if cached else 0, latency_ms=100.0 + i % 50, ttft_ms=None, status=status,
             ended="complete" if status < 400 else "error", error_code=None if status < 400 else "rate_limit_exceeded",
             source="proxy", created_at=created_at)
    return tuple(r[c] for c in COLUMNS)


@pytest.fixture
async def api(tmp_path, aiohttp_client):
    env = await make_env(tmp_path)
    app: web.Application = make_app(env)
    usage_routes.add_routes(app)
    analytics.add_routes(app)
    client = await aiohttp_client(app)
    store = env.services.store
    pa = await store.projects.create(org_id=env.orgs["a"].org_id, name="pa")
    pb = await store.projects.create(org_id=env.orgs["b"].org_id, name="pb")
    auth = h(await login(client, env.orgs["a"].email))
    return client, store, pa["id"], pb["id"], auth


async def test_project_usage_filters_summarises_and_hides_other_orgs(api):
    client, store, pa, pb, auth = api
    now = time.time()
    rows = [_row(i, pa, created_at=now - i * 60) for i in range(30)]
    rows += [_row(100 + i, pa, created_at=now - 10, model="gpt", status=429) for i in range(5)]
    rows += [_row(200 + i, pa, created_at=now - 20, cached="exact") for i in range(5)]
    rows += [_row(i, pb, created_at=now) for i in range(7)]
    await store.usage.insert_many(rows)

    r = await client.get(f"/api/projects/{pa}/usage?from=now-1h&limit=10", headers=auth)
    body = await r.json()
    assert r.status == 200 and body["total"] == 40 and len(body["data"]) == 10
    s = body["summary"]
    assert s["requests"] == 40 and s["cost_micros"] == 35 * 1000 and s["cost_usd"] == "0.035000"
    assert s["cache_hits"] == 5 and s["cache_hit_rate"] == 0.125 and s["errors"] == 5

    body = await (await client.get(f"/api/projects/{pa}/usage?model=gpt", headers=auth)).json()
    assert body["total"] == 5 and {d["status"] for d in body["data"]} == {429}
    assert (await client.get(f"/api/projects/{pa}/usage?limit=1001", headers=auth)).status == 400
    assert (await client.get(f"/api/projects/{pa}/usage?from=yesterday", headers=auth)).status == 400
    assert (await client.get(f"/api/projects/{pb}/usage", headers=auth)).status == 404  # other org: not found

    body = await (await client.get("/api/requests?status=error&limit=3", headers=auth)).json()
    assert body["total"] == 5 and len(body["data"]) == 3
    body = await (await client.get("/api/requests", headers=auth)).json()
    assert body["total"] == 40  # org b's 7 rows never appear
    assert (await client.get(f"/api/requests/req_{pa}_3", headers=auth)).status == 200
    assert (await client.get(f"/api/requests/req_{pb}_3", headers=auth)).status == 404
    assert (await client.get("/api/requests")).status == 401


async def test_dashboard_stats_overview_models_and_series(api):
    client, store, pa, _, auth = api
    now = time.time()
    rows = [_row(i, pa, created_at=now - 3600) for i in range(10)]            # this period
    rows += [_row(50 + i, pa, created_at=now - 8 * 86400) for i in range(5)]   # previous 7 days
    rows += [_row(90 + i, pa, created_at=now - 60, cached="semantic") for i in range(2)]
    await store.usage.insert_many(rows)

    stats = await (await client.get("/api/dashboard/stats?period=7d", headers=auth)).json()
    assert stats["requests_total"] == 12 and stats["cache_hit_rate"] == round(2 / 12, 4)
    assert stats["cost_usd"] == "0.010000" and stats["cost_saved_usd"] == "0.002000"
    assert stats["top_models"][0]["model"] == "mock" and sum(d["requests"] for d in stats["daily"]) == 12
    assert (await (await client.get("/api/dashboard/stats?period=all", headers=auth)).json())["requests_total"] == 17
    assert (await client.get("/api/dashboard/stats?period=1y", headers=auth)).status == 400

    ov = await (await client.get("/api/analytics/overview?from=now-7d", headers=auth)).json()
    assert ov["current"]["requests"] == 12 and ov["previous"]["requests"] == 5 and ov["change_pct"]["requests"] == 140.0

    models = await (await client.get("/api/analytics/models", headers=auth)).json()
    assert models["data"][0]["requests"] == 17

    q = {"metrics": ["requests", "cost_usd"], "from": "now-2h", "to": "now", "interval": "1h", "group_by": "model"}
    series = await (await client.post("/api/metrics/query", json=q, headers=auth)).json()
    assert [s["key"] for s in series["series"]] == ["mock"]
    assert sum(p["requests"] for p in series["series"][0]["points"]) == 12
    assert (await client.post("/api/metrics/query", json={**q, "interval": "1s", "from": "now-30d"}, headers=auth)).status == 400


async def test_csv_export_of_100k_rows_streams_with_flat_memory(api):
    client, store, pa, _, auth = api
    n, now = 100_000, time.time() - 86400
    for start in range(0, n, 10_000):
        await store.usage.insert_many([_row(i, pa, created_at=now + i * 0.001) for i in range(start, start + 10_000)])

    async def export(query: str) -> tuple[int, int, int, bytes, bytes]:
        tracemalloc.start()
        try:
            r = await client.get(f"/api/projects/{pa}/usage/export{query}", headers=auth)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            assert r.headers.get("Transfer-Encoding") == "chunked"
            total, lines, head, tail = 0, 0, b"", b""
            async for chunk in r.content.iter_chunked(64 * 1024):
                if not head:
                    head = chunk[:4096]
                total += len(chunk)
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-4096:]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return total, lines, peak, head, tail

    small_total, small_lines, small_peak, _, _ = await export(f"?to={now + 10.0}")  # the first 10k rows
    total, lines, peak, head, tail = await export("")
    assert small_lines == 10_000 + 1 and lines == n + 1
    header = next(csv.reader(io.StringIO(head.decode())))
    assert header[0] == "id" and "cost_micros" in header and "request_text" not in header
    assert tail.decode().strip().splitlines()[-1].startswith(f"req_{pa}_{n - 1},")
    print(f"CSV export: 10k rows {small_total / 1e6:.1f} MB peak {small_peak / 1e6:.2f} MB; "
          f"100k rows {total / 1e6:.1f} MB peak {peak / 1e6:.2f} MB (Python allocations, server and client)")
    # flat: ten times the rows, not ten times the memory (and far below the document's size)
    assert peak < small_peak * 2 + 1_000_000, "export memory grows with the row count"
    assert peak < total / 3
