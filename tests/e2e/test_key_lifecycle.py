"""Key lifecycle through the OpenAI SDK, on two gateway processes sharing one SQLite file.

create (admin API of process A) → use on A and B → revoke on A → the next call fails with
AuthenticationError on A at once and on B within the auth cache TTL.
"""
from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest

from tests.fixtures.gateway import base_config, files_at_rest

ADMIN = {"WATCHLLM_ADMIN_EMAIL": "ops@example.com", "WATCHLLM_ADMIN_PASSWORD": "a long enough password", "WATCHLLM_SCRYPT_N": "1024"}
TTL = 0.5


def _api(gw, method, path, body=None, token=None):
    req = urllib.request.Request(gw.url + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        return r.status, json.loads(raw) if raw else None


def _chat(gw, key):
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hello"}])


@pytest.fixture
def two_gateways(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, pipeline=[{"auth": {"cache_ttl": TTL}}, {"router": {}}])
    a = gateway_factory(cfg, env=ADMIN, name="a")
    b = gateway_factory(cfg, env=ADMIN, name="b")
    return a, b


def test_create_use_revoke_across_two_processes(two_gateways, tmp_path):
    a, b = two_gateways
    _, tokens = _api(a, "POST", "/api/auth/login", {"email": ADMIN["WATCHLLM_ADMIN_EMAIL"], "password": ADMIN["WATCHLLM_ADMIN_PASSWORD"]})
    token = tokens["access_token"]
    # the JWT secret is persisted in the shared store: a token from A works on B
    assert _api(b, "GET", "/api/auth/me", token=token)[0] == 200
    status, project = _api(a, "POST", "/api/projects", {"name": "e2e"}, token)
    assert status == 201
    _, created = _api(a, "POST", f"/api/projects/{project['id']}/keys", {"name": "sdk"}, token)
    key = created["key"]

    assert _chat(a, key).choices[0].message.content
    assert _chat(b, key).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        _chat(a, key[:-2] + "xx")

    assert _api(a, "DELETE", f"/api/projects/{project['id']}/keys/{created['id']}", token=token)[0] == 204
    revoked = time.monotonic()
    with pytest.raises(openai.AuthenticationError):
        _chat(a, key)  # same process: immediate
    while True:
        try:
            _chat(b, key)
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401 and exc.code == "invalid_api_key"
            break
        assert time.monotonic() - revoked < TTL + 1.0, "process B still accepts a revoked key"
        time.sleep(0.05)
    assert time.monotonic() - revoked <= TTL + 0.5

    # no plaintext at rest, nor in either process's log
    raw = files_at_rest(tmp_path)
    secret = key[-43:]  # the random part, token_urlsafe(32) (it may itself hold "_": never split on it)
    assert secret.encode() not in raw
    assert secret not in a.log() and secret not in b.log()


def test_requests_without_a_key_are_401_through_the_sdk(two_gateways):
    a, _ = two_gateways
    with pytest.raises(openai.AuthenticationError):
        _chat(a, "lgw_proj_000000000000_" + "A" * 43)
    with pytest.raises(openai.AuthenticationError):
        _chat(a, "sk-not-ours")
