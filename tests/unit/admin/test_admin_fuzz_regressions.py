"""Regressions for what the signed-in admin fuzz (tests/integration/test_hardening_schemathesis_admin.py) found.

Each was a 500 (or an error without a stable code) for a hostile but well-formed request;
each must now be a 4xx with a JSON ``error.code``.
"""
from __future__ import annotations

import pytest

from tests.unit.admin.kit import h, login, make_app, make_env


@pytest.fixture
async def env(tmp_path):
    return await make_env(tmp_path)


@pytest.fixture
async def client(aiohttp_client, env):
    return await aiohttp_client(make_app(env))


async def _error(resp, status: int = 400) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    return body["error"]


@pytest.mark.parametrize("path", ["/api/projects", "/api/team", "/api/teams", "/api/alerts", "/api/alerts/events", "/api/webhooks"])
async def test_offset_beyond_sqlite_integers_is_400(client, path):
    """offset=2**65 overflowed SQLite's 64-bit integer binding: 500."""
    auth = h(await login(client, "admin@a.test"))
    err = await _error(await client.get(f"{path}?offset={2**65}", headers=auth))
    assert err["code"] == "invalid_request" and err["param"] == "offset"
    assert (await client.get(f"{path}?offset=1000", headers=auth)).status == 200


U64 = 2**64 - 1  # orjson parses integers up to 2**64-1 as int; SQLite stores at most 2**63-1


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "cost_micros", "status", "latency_ms"])
async def test_ingest_numbers_beyond_sqlite_integers_are_400(client, field):
    auth = h(await login(client, "admin@a.test"))
    pid = (await (await client.post("/api/projects", json={"name": "p"}, headers=auth)).json())["id"]
    err = await _error(await client.post("/api/integrations/run", json={"project_id": pid, "model": "m", field: U64}, headers=auth))
    assert err["code"] == "invalid_request" and err["param"] == field
    r = await client.post("/api/integrations/run", json={"project_id": pid, "model": "m", field: 2**63 - 1}, headers=auth)
    assert r.status == 201, await r.text()


@pytest.mark.parametrize("interval", [U64, 2**63, "99999999999999999999999d", "367d", 0, -5, "0h"])
async def test_metrics_query_interval_out_of_range_is_400(client, interval):
    auth = h(await login(client, "admin@a.test"))
    err = await _error(await client.post("/api/metrics/query", json={"interval": interval}, headers=auth))
    assert err["param"] == "interval"


async def test_metrics_query_largest_interval_still_works(client):
    auth = h(await login(client, "admin@a.test"))
    r = await client.post("/api/metrics/query", json={"interval": "366d", "from": "now-400d"}, headers=auth)
    assert r.status == 200, await r.text()


@pytest.mark.parametrize("host", ["a..example.com", "x" * 64 + ".example.com", ".example.com"])
async def test_webhook_host_the_idna_codec_refuses_is_400(client, monkeypatch, host):
    """getaddrinfo raised UnicodeError ("label empty or too long"), which the SSRF check did not catch: 500."""
    monkeypatch.delenv("WATCHLLM_WEBHOOK_ALLOW_PRIVATE", raising=False)
    auth = h(await login(client, "admin@a.test"))
    err = await _error(await client.post("/api/webhooks", json={"url": f"http://{host}/hook"}, headers=auth))
    assert err["code"] == "invalid_request" and err["param"] == "url"


async def test_resolve_public_turns_idna_errors_into_blocked_target():
    from plugins.tools.ssrf import BlockedTarget, resolve_public, system_resolver

    with pytest.raises(BlockedTarget):
        await resolve_public("a.." + "b" * 70 + ".com", 443, system_resolver)


@pytest.mark.parametrize("body", [{"from": ""}, {"to": ""}, {"from": "", "to": ""}])
async def test_metrics_query_empty_from_or_to_means_the_default(client, body):
    """An empty `from`/`to` parsed to None and tripped an assert: 500."""
    auth = h(await login(client, "admin@a.test"))
    r = await client.post("/api/metrics/query", json={**body, "interval": "1h"}, headers=auth)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert 86400 - 5 <= data["to"] - data["from"] <= 86400 + 5


@pytest.mark.parametrize("settings,param", [
    ({"limits": {"rpm": "abc"}}, "settings.limits.rpm"),
    ({"limits": {"tpm": [1]}}, "settings.limits.tpm"),
    ({"limits": {"monthly": 1.5}}, "settings.limits.monthly"),
    ({"limits": {"key_rpm": -1}}, "settings.limits.key_rpm"),
    ({"limits": {"rpn": 5}}, "settings.limits.rpn"),
    ({"budget": {"daily_usd": "x"}}, "settings.budget.daily_usd"),
    ({"budget": {"monthly_usd": -5}}, "settings.budget.monthly_usd"),
    ({"budget": {"key_daily_usd": True}}, "settings.budget.key_daily_usd"),
    ({"budget": {"yearly_usd": 1}}, "settings.budget.yearly_usd"),
    ({"rpm": 2**64 - 1}, "settings.rpm"),
])
async def test_nested_limits_and_budget_settings_are_validated(client, settings, param):
    """These were stored as given; the ratelimit/budget middlewares then failed (500) on every call of that tenant."""
    auth = h(await login(client, "admin@a.test"))
    err = await _error(await client.post("/api/projects", json={"name": "p", "settings": settings}, headers=auth))
    assert err["code"] == "invalid_request" and err["param"] == param
    pid = (await (await client.post("/api/projects", json={"name": "ok"}, headers=auth)).json())["id"]
    err = await _error(await client.patch(f"/api/projects/{pid}", json={"settings": settings}, headers=auth))
    assert err["param"] == param


async def test_valid_nested_limits_and_budget_settings_are_kept(client):
    auth = h(await login(client, "admin@a.test"))
    settings = {"limits": {"rpm": 60, "tpm": 1000, "monthly": 10, "key_rpm": None},
                "budget": {"daily_usd": 1.5, "monthly_usd": 20, "key_daily_usd": 0, "key_monthly_usd": None}}
    r = await client.post("/api/projects", json={"name": "p", "settings": settings}, headers=auth)
    assert r.status == 201, await r.text()
    assert (await r.json())["settings"] == settings
