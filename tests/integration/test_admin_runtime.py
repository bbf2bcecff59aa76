"""Admin views over live layers: a project's budget spend, its semantic cache stats and flush."""
from __future__ import annotations

import json
import urllib.request

import openai

from tests.fixtures.gateway import base_config


def _call(gw, method, path, token=None, body=None):
    req = urllib.request.Request(f"{gw.url}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_spend_and_cache_views_follow_the_traffic(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, pricing={"models": {"mock-1": {"input": 1000, "output": 1000}}},
                      pipeline=["auth", {"budget": {"project": {"monthly_usd": 100}}}, {"semantic_cache": {"semantic": False}}, "router"])
    gw = gateway_factory(cfg, env={"WATCHLLM_ADMIN_EMAIL": "ops@example.com", "WATCHLLM_ADMIN_PASSWORD": "correct horse battery"})
    status, login = _call(gw, "POST", "/api/auth/login", body={"email": "ops@example.com", "password": "correct horse battery"})
    assert status == 200, login
    token = login["access_token"]
    status, project = _call(gw, "POST", "/api/projects", token, {"name": "acme", "plan": "starter"})
    assert status == 201, project
    pid = project["id"]
    status, key = _call(gw, "POST", f"/api/projects/{pid}/keys", token, {"name": "k"})
    client = openai.OpenAI(base_url=gw.base_url, api_key=key["key"], max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "same question"}])
    status, spend = _call(gw, "GET", f"/api/projects/{pid}/spend?period=month", token)
    assert status == 200 and spend["spent_micros"] > 0  # the first call was a miss; two exact hits cost 0
    status, stats = _call(gw, "GET", f"/api/projects/{pid}/cache", token)
    assert status == 200 and stats["project_id"] == pid
    status, flushed = _call(gw, "DELETE", f"/api/projects/{pid}/cache", token)
    assert status == 200 and flushed["flushed"] >= 1
    raw = client.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "same question"}])
    assert raw.headers["x-watchllm-cached"] == "false"  # flushed: a miss again
    assert _call(gw, "GET", "/api/projects/nope/spend", token)[0] == 404
