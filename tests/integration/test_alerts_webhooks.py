"""Alerts and webhooks end to end: the evaluator fires once per crossing, signed deliveries
reach a local receiver, failures are retried with back-off and recorded, orgs are isolated."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from gateway.store.usage import COLUMNS
from gateway.webhooks import verify
from tests.unit.admin.kit import h, login, make_app, make_env

FAST = {"WATCHLLM_ALERT_INTERVAL_S": "0.1", "WATCHLLM_WEBHOOK_ALLOW_PRIVATE": "1", "WATCHLLM_WEBHOOK_BACKOFF_S": "0.1",
        "WATCHLLM_WEBHOOK_MAX_ATTEMPTS": "4"}


def usage_row(i: int, project_id: str, *, cost: int = 1000, status: int = 200, latency: float = 100.0,
              created_at: float | None = None) -> tuple[Any, ...]:
    r = {c: None for c in COLUMNS}
    r.update(id=f"req_{project_id}_{i}_{time.monotonic_ns()}", project_id=project_id, key_id="key_1", endpoint="chat.completions",
             model_requested="mock", model_served="mock-1", provider="mock", attempts=1, prompt_tokens=10, completion_tokens=5,
             cost_micros=cost, tokens_saved=0, cost_saved_micros=0, latency_ms=latency, status=status, ended="complete" if status < 400 else "error",
             source="proxy", created_at=time.time() if created_at is None else created_at)
    return tuple(r[c] for c in COLUMNS)


class Receiver:
    """A local webhook endpoint answering a scripted list of statuses (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.calls: list[tuple[float, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((time.monotonic(), dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200, text="ok")

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.calls) >= n, f"receiver got {len(self.calls)} calls, expected {n}"


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def setup_env(tmp_path, aiohttp_client, aiohttp_server, monkeypatch):
    async def make(env_vars: dict[str, str] = FAST, statuses: list[int] | None = None):
        for k, v in env_vars.items():
            monkeypatch.setenv(k, v)
        receiver = Receiver(statuses)
        rapp = web.Application()
        rapp.router.add_post("/hook", receiver.handle)
        server = await aiohttp_server(rapp, host="127.0.0.1")
        env = await make_env(tmp_path)
        client = await aiohttp_client(make_app(env))
        store = env.services.store
        pa = await store.projects.create(org_id=env.orgs["a"].org_id, name="pa", settings={"budget_micros": 10_000, "budget_period": "month"})
        auth = h(await login(client, env.orgs["a"].email))
        return env, client, store, pa["id"], auth, receiver, str(server.make_url("/hook"))

    return make


async def test_alert_crossing_sends_exactly_one_signed_delivery(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env()
    r = await client.post("/api/webhooks", json={"url": url, "events": ["alert.fired"], "name": "ops"}, headers=auth)
    assert r.status == 201, await r.text()
    hook = await r.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    listed = await (await client.get("/api/webhooks", headers=auth)).json()
    assert listed["total"] == 1 and "secret" not in listed["data"][0]  # shown once

    r = await client.post("/api/alerts", json={"name": "spend", "type": "cost_spike", "threshold": 0.01, "project_id": pa},
                          headers=auth)
    assert r.status == 201, await r.text()
    alert = await r.json()
    assert alert["state"] == "ok" and alert["type"] == "cost_spike"

    await store.usage.insert_many([usage_row(i, pa, cost=4000) for i in range(2)])  # $0.008: under
    await asyncio.sleep(0.35)
    assert receiver.calls == []
    await store.usage.insert_many([usage_row(9, pa, cost=4000)])  # $0.012: crosses
    await receiver.wait_for(1)
    await store.usage.insert_many([usage_row(10 + i, pa, cost=4000) for i in range(3)])  # stays above
    await asyncio.sleep(0.6)  # several more evaluation passes
    assert len(receiver.calls) == 1

    _, headers, body = receiver.calls[0]
    assert verify(secret, headers["X-WatchLLM-Timestamp"], body, headers["X-WatchLLM-Signature"])
    assert not verify("whsec_wrong", headers["X-WatchLLM-Timestamp"], body, headers["X-WatchLLM-Signature"])
    assert not verify(secret, str(int(headers["X-WatchLLM-Timestamp"]) - 1), body, headers["X-WatchLLM-Signature"])
    assert headers["X-WatchLLM-Event"] == "alert.fired" and headers["Content-Type"] == "application/json"
    import orjson
    payload = orjson.loads(body)
    assert payload["type"] == "alert.fired" and payload["alert"]["id"] == alert["id"] and payload["value"] == pytest.approx(0.012)

    events = await (await client.get("/api/alerts/events", headers=auth)).json()
    assert events["total"] == 1 and events["data"][0]["kind"] == "fired" and events["data"][0]["alert_id"] == alert["id"]
    got = await (await client.get(f"/api/alerts/{alert['id']}", headers=auth)).json()
    assert got["state"] == "firing" and got["last_fired_at"] is not None

    async def delivered() -> bool:
        d = await (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=auth)).json()
        return d["total"] == 1 and d["data"][0]["status"] == "delivered"

    await until(delivered)
    d = (await (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=auth)).json())["data"][0]
    assert d["attempts"] == 1 and d["response_status"] == 200 and d["event_id"] == payload["id"]
    assert [a["status_code"] for a in d["attempt_log"]] == [200] and d["attempt_log"][0]["finished_at"] >= d["attempt_log"][0]["started_at"]


async def test_alert_rearms_after_going_back_under(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env()
    await client.post("/api/webhooks", json={"url": url, "events": ["alert.fired", "alert.resolved"]}, headers=auth)
    r = await client.post("/api/alerts", json={"name": "errors", "type": "error_rate", "threshold": 50, "window_s": 1,
                                               "project_id": pa}, headers=auth)
    alert = await r.json()
    await store.usage.insert_many([usage_row(i, pa, status=500) for i in range(3)])  # 100 % errors
    await receiver.wait_for(1)
    await receiver.wait_for(2, timeout=5.0)  # the rows leave the 1 s window: resolved
    await store.usage.insert_many([usage_row(i, pa, status=502) for i in range(3)])  # crosses again
    await receiver.wait_for(3)
    await asyncio.sleep(0.3)
    kinds = [c[1]["X-WatchLLM-Event"] for c in receiver.calls]
    assert kinds[:3] == ["alert.fired", "alert.resolved", "alert.fired"]
    events = await (await client.get(f"/api/alerts/events?alert_id={alert['id']}", headers=auth)).json()
    assert [e["kind"] for e in reversed(events["data"])][:3] == ["fired", "resolved", "fired"]


async def test_failing_receiver_is_retried_with_backoff_and_every_attempt_recorded(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env(statuses=[500, 500, 200])
    hook = await (await client.post("/api/webhooks", json={"url": url}, headers=auth)).json()
    await client.post("/api/alerts", json={"name": "budget", "type": "budget", "threshold": 80, "project_id": pa}, headers=auth)
    await store.usage.insert_many([usage_row(1, pa, cost=8_500)])  # 85 % of the 10_000 micro-USD budget
    await receiver.wait_for(3)
    await asyncio.sleep(0.4)
    assert len(receiver.calls) == 3  # no 4th attempt after the 200
    ids = {c[1]["X-WatchLLM-Delivery"] for c in receiver.calls}
    assert len(ids) == 1  # the same delivery retried
    assert [c[1]["X-WatchLLM-Attempt"] for c in receiver.calls] == ["1", "2", "3"]
    t = [c[0] for c in receiver.calls]
    assert t[1] - t[0] >= 0.08 and t[2] - t[1] >= 0.16  # back-off 0.1 s, then 0.2 s (±10 %)
    for _, headers, body in receiver.calls:
        assert verify(hook["secret"], headers["X-WatchLLM-Timestamp"], body, headers["X-WatchLLM-Signature"])

    d = await (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=auth)).json()
    assert d["total"] == 1
    row = d["data"][0]
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["delivered_at"] is not None
    assert [(a["attempt"], a["status_code"]) for a in row["attempt_log"]] == [(1, 500), (2, 500), (3, 200)]
    assert [a["error"] for a in row["attempt_log"]] == ["HTTP 500", "HTTP 500", None]


async def test_receiver_failing_for_good_stops_after_max_attempts(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env(
        {**FAST, "WATCHLLM_WEBHOOK_MAX_ATTEMPTS": "2", "WATCHLLM_WEBHOOK_BACKOFF_S": "0.05"}, statuses=[503] * 10)
    hook = await (await client.post("/api/webhooks", json={"url": url}, headers=auth)).json()
    await client.post("/api/alerts", json={"name": "slow", "type": "slow_response", "threshold": 500, "window_s": 60,
                                           "settings": {"stat": "p95"}}, headers=auth)
    await store.usage.insert_many([usage_row(i, pa, latency=100.0 if i < 18 else 2000.0) for i in range(20)])  # p95 = 2000
    await receiver.wait_for(2)

    async def failed() -> bool:
        d = await (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=auth)).json()
        return d["total"] == 1 and d["data"][0]["status"] == "failed"

    await until(failed)
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 2


async def test_other_org_cannot_see_or_edit_alerts_and_webhooks(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env()
    hook = await (await client.post("/api/webhooks", json={"url": url}, headers=auth)).json()
    alert = await (await client.post("/api/alerts", json={"name": "a", "type": "cost_spike", "threshold": 1}, headers=auth)).json()
    other = h(await login(client, env.orgs["b"].email))
    assert (await client.get(f"/api/alerts/{alert['id']}", headers=other)).status == 404
    assert (await client.put(f"/api/alerts/{alert['id']}", json={"threshold": 2}, headers=other)).status == 404
    assert (await client.delete(f"/api/alerts/{alert['id']}", headers=other)).status == 404
    assert (await client.get(f"/api/webhooks/{hook['id']}", headers=other)).status == 404
    assert (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=other)).status == 404
    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=other)).status == 404
    assert (await (await client.get("/api/alerts", headers=other)).json())["total"] == 0
    assert (await (await client.get("/api/webhooks", headers=other)).json())["total"] == 0
    assert (await (await client.get("/api/alerts/events", headers=other)).json())["total"] == 0
    r = await client.post("/api/alerts", json={"name": "x", "type": "budget", "threshold": 80, "project_id": pa}, headers=other)
    assert r.status == 404  # a project of another org
    member = h(await login(client, env.orgs["a"].member_email))
    assert (await client.get("/api/alerts", headers=member)).status == 200
    assert (await client.post("/api/alerts", json={"name": "m", "type": "cost_spike", "threshold": 1}, headers=member)).status == 403
    assert (await client.get("/api/alerts")).status == 401
    # the owner still can
    r = await client.put(f"/api/alerts/{alert['id']}", json={"threshold": 2, "enabled": False}, headers=auth)
    assert r.status == 200 and (await r.json())["threshold"] == 2 and (await r.json())["enabled"] is False
    assert (await client.delete(f"/api/alerts/{alert['id']}", headers=auth)).status == 204
    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=auth)).status == 204


async def test_validation_and_ssrf_guard(setup_env):
    env, client, store, pa, auth, receiver, url = await setup_env({**FAST, "WATCHLLM_WEBHOOK_ALLOW_PRIVATE": "0"})
    for bad in (url, "http://127.0.0.1:9/x", "http://10.0.0.8/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "ftp://example.com/x", "http://user:pw@example.com/x", "http://localhost/x", "not a url"):
        r = await client.post("/api/webhooks", json={"url": bad}, headers=auth)
        assert r.status == 400, bad
    bad_alerts = [
        {"name": "x", "type": "nope", "threshold": 1},
        {"name": "x", "type": "cost_spike", "threshold": -1},
        {"name": "x", "type": "cost_spike"},
        {"name": "x", "type": "budget", "threshold": 80},  # needs a project
        {"name": "x", "type": "error_rate", "threshold": 5, "window_s": 0},
        {"name": "x", "type": "slow_response", "threshold": 5, "settings": {"stat": "p99"}},
    ]
    for body in bad_alerts:
        assert (await client.post("/api/alerts", json=body, headers=auth)).status == 400, body
    r = await client.post("/api/alerts", json={"name": "q", "type": "quota", "threshold": 90, "project_id": pa}, headers=auth)
    assert r.status == 201 and (await r.json())["type"] == "budget"
