"""Every malformed, forged, expired or revoked admin token is refused with 401 (or 404 across orgs), never 200."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.admin.tokens import TokenService
from tests.unit.admin.kit import JWT_SECRET, h, login, make_app, make_env


@pytest.fixture
async def env(tmp_path):
    return await make_env(tmp_path)


@pytest.fixture
async def client(aiohttp_client, env):
    return await aiohttp_client(make_app(env))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(env, **over):
    org = env.orgs["a"]
    now = int(time.time())
    base = {"iss": "watchllm", "aud": "watchllm-admin", "sub": org.admin_id, "org": org.org_id, "role": "admin",
            "typ": "access", "jti": "j-" + str(now), "iat": now, "exp": now + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(claims, key=JWT_SECRET, alg="HS256", headers=None):
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _cases(env):
    claims = _claims(env)
    yield "positive control", _sign(claims), 200
    yield "alg none", f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.", 401
    yield "alg None (case)", f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(claims)}.", 401
    yield "wrong algorithm HS512", _sign(claims, alg="HS512"), 401
    yield "wrong algorithm HS384", _sign(claims, alg="HS384"), 401
    yield "bad signature", _sign(claims, key="x" * 48), 401
    tok = _sign(claims)
    yield "tampered payload", tok.split(".")[0] + "." + _b64({**claims, "role": "admin", "sub": "other"}) + "." + tok.split(".")[2], 401
    yield "expired", _sign(_claims(env, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)), 401
    yield "missing exp", _sign(_claims(env, exp=None)), 401
    yield "missing iat", _sign(_claims(env, iat=None)), 401
    yield "missing jti", _sign(_claims(env, jti=None)), 401
    yield "missing sub", _sign(_claims(env, sub=None)), 401
    yield "missing aud", _sign(_claims(env, aud=None)), 401
    yield "wrong aud", _sign(_claims(env, aud="someone-else")), 401
    yield "aud list with ours", _sign(_claims(env, aud=["watchllm-admin", "other"])), 401
    yield "missing iss", _sign(_claims(env, iss=None)), 401
    yield "wrong iss", _sign(_claims(env, iss="evil")), 401
    yield "partial iss", _sign(_claims(env, iss="watchll")), 401
    yield "nbf in future", _sign(_claims(env, nbf=int(time.time()) + 3600)), 401
    yield "refresh used as access", _sign(_claims(env, typ="refresh")), 401
    yield "no typ", _sign(_claims(env, typ=None)), 401
    yield "unknown crit header", _sign(claims, headers={"crit": ["exp-x"], "exp-x": 1}), 401
    yield "sub of org b claiming org a", _sign(_claims(env, sub=env.orgs["b"].admin_id)), 401
    yield "unknown user", _sign(_claims(env, sub="usr_nobody")), 401
    yield "garbage", "not.a.jwt", 401
    yield "empty", "", 401


async def test_token_attack_matrix(client, env):
    results = {}
    for name, token, expected in _cases(env):
        r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        results[name] = (r.status, expected)
        if r.status == 401:
            assert (await r.json())["error"]["code"] == "invalid_api_key"
    wrong = {k: v for k, v in results.items() if v[0] != v[1]}
    assert not wrong, wrong


async def test_all_rejections_share_one_body(client, env):
    bodies = set()
    for name, token, expected in _cases(env):
        if expected == 401 and token:
            r = await client.get("/api/projects", headers={"Authorization": f"Bearer {token}"})
            bodies.add(await r.text())
    assert len(bodies) == 1


async def test_revoked_jti_is_refused(client, env):
    auth = h(await login(client, "admin@a.test"))
    assert (await client.get("/api/projects", headers=auth)).status == 200
    assert (await client.post("/api/auth/logout", headers=auth)).status == 204
    for method, path in (("GET", "/api/projects"), ("GET", "/api/auth/me"), ("POST", "/api/projects")):
        r = await client.request(method, path, headers=auth, json={"name": "x"})
        assert r.status == 401


async def test_project_key_is_not_an_admin_token(client, env):
    store = env.services.store
    project = await store.projects.create(org_id=env.orgs["a"].org_id, name="p")
    from gateway.admin.project_routes import create_key

    class Ctx:
        pass

    ctx = Ctx()
    ctx.store = store
    key = (await create_key(ctx, project["id"]))["key"]
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        assert (await client.get("/api/projects", headers=headers)).status == 401
        assert (await client.get(f"/api/projects/{project['id']}/keys", headers=headers)).status == 401
        assert (await client.delete(f"/api/projects/{project['id']}", headers=headers)).status == 401


async def test_other_orgs_token_cannot_reach_this_orgs_resources(client, env):
    a, b = h(await login(client, "admin@a.test")), h(await login(client, "admin@b.test"))
    pid = (await (await client.post("/api/projects", json={"name": "secret"}, headers=a)).json())["id"]
    kid = (await (await client.post(f"/api/projects/{pid}/keys", json={}, headers=a)).json())["id"]
    team = (await (await client.post("/api/teams", json={"name": "t"}, headers=a)).json())["id"]
    attempts = [
        ("GET", f"/api/projects/{pid}"), ("PATCH", f"/api/projects/{pid}"), ("DELETE", f"/api/projects/{pid}"),
        ("GET", f"/api/projects/{pid}/keys"), ("POST", f"/api/projects/{pid}/keys"),
        ("DELETE", f"/api/projects/{pid}/keys/{kid}"), ("GET", f"/api/projects/{pid}/providers"),
        ("POST", f"/api/projects/{pid}/providers"), ("DELETE", f"/api/projects/{pid}/providers/openai"),
        ("GET", f"/api/teams/{team}"), ("DELETE", f"/api/teams/{team}"), ("POST", f"/api/teams/{team}/members"),
        ("DELETE", f"/api/team/{env.orgs['a'].admin_id}"),
    ]
    for method, path in attempts:
        r = await client.request(method, path, headers=b, json={"name": "x", "provider": "openai", "api_key": "sk-xxxxxxxxxxxx", "user_id": "u"})
        assert r.status in (403, 404), (method, path, r.status)
    listed = await (await client.get("/api/projects", headers=b)).json()
    assert listed["total"] == 0
    assert (await client.get(f"/api/projects/{pid}", headers=a)).status == 200
    keys = await (await client.get(f"/api/projects/{pid}/keys", headers=a)).json()
    assert keys["data"][0]["revoked_at"] is None


def test_token_service_refuses_short_secrets_and_wide_leeway():
    with pytest.raises(ValueError):
        TokenService("short", "i", "a")
    with pytest.raises(ValueError):
        TokenService("s" * 32, "i", "a", leeway=60)
