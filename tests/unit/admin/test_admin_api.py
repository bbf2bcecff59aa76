"""The admin API as a client sees it: projects, keys, provider keys, teams, roles, pagination."""
from __future__ import annotations

import pytest

from tests.unit.admin.kit import h, login, make_app, make_env


@pytest.fixture
async def env(tmp_path):
    return await make_env(tmp_path)


@pytest.fixture
async def client(aiohttp_client, env):
    return await aiohttp_client(make_app(env))


async def test_project_crud_with_pagination(client, env):
    auth = h(await login(client, "admin@a.test"))
    for i in range(5):
        r = await client.post("/api/projects", json={"name": f"p{i}", "settings": {"rpm": 60, "budget_micros": 5_000_000}}, headers=auth)
        assert r.status == 201, await r.text()
    r = await client.get("/api/projects?limit=2&offset=1", headers=auth)
    body = await r.json()
    assert body["total"] == 5 and body["limit"] == 2 and body["offset"] == 1
    assert [p["name"] for p in body["data"]] == ["p1", "p2"]
    pid = body["data"][0]["id"]
    r = await client.patch(f"/api/projects/{pid}", json={"settings": {"tpm": 1000, "rpm": None}}, headers=auth)
    assert (await r.json())["settings"] == {"budget_micros": 5_000_000, "tpm": 1000}
    assert (await client.delete(f"/api/projects/{pid}", headers=auth)).status == 204
    assert (await client.get(f"/api/projects/{pid}", headers=auth)).status == 404


async def test_invalid_settings_and_duplicates_are_400(client):
    auth = h(await login(client, "admin@a.test"))
    r = await client.post("/api/projects", json={"name": "x", "settings": {"rpm": "many"}}, headers=auth)
    assert r.status == 400 and (await r.json())["error"]["param"] == "settings.rpm"
    r = await client.post("/api/projects", json={"name": "x", "settings": {"nope": 1}}, headers=auth)
    assert r.status == 400
    assert (await client.post("/api/projects", json={"name": "x"}, headers=auth)).status == 201
    assert (await client.post("/api/projects", json={"name": "x"}, headers=auth)).status == 409
    assert (await client.get("/api/projects?limit=0", headers=auth)).status == 400


async def test_key_is_returned_once_and_listed_without_secret(client):
    auth = h(await login(client, "admin@a.test"))
    pid = (await (await client.post("/api/projects", json={"name": "p"}, headers=auth)).json())["id"]
    r = await client.post(f"/api/projects/{pid}/keys", json={"name": "ci"}, headers=auth)
    assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
    created = await r.json()
    assert created["key"].startswith(f"lgw_proj_{created['id']}_") and len(created["key"]) >= 9 + 12 + 1 + 43
    listed = await (await client.get(f"/api/projects/{pid}/keys", headers=auth)).json()
    assert listed["total"] == 1 and "key" not in listed["data"][0] and "secret_hash" not in listed["data"][0]
    assert created["key"] not in str(listed)
    assert (await client.delete(f"/api/projects/{pid}/keys/{created['id']}", headers=auth)).status == 204
    listed = await (await client.get(f"/api/projects/{pid}/keys", headers=auth)).json()
    assert listed["data"][0]["revoked_at"] is not None


async def test_provider_key_is_never_returned(client):
    auth = h(await login(client, "admin@a.test"))
    pid = (await (await client.post("/api/projects", json={"name": "p"}, headers=auth)).json())["id"]
    secret = "sk-project-own-key-0123456789abcdef"
    r = await client.post(f"/api/projects/{pid}/providers", json={"provider": "openai", "api_key": secret}, headers=auth)
    assert r.status == 201
    text = await r.text() + await (await client.get(f"/api/projects/{pid}/providers", headers=auth)).text()
    assert secret not in text and secret[:-4] not in text
    r = await client.post(f"/api/projects/{pid}/providers", json={"provider": "nope", "api_key": secret}, headers=auth)
    assert r.status == 400
    assert (await client.delete(f"/api/projects/{pid}/providers/openai", headers=auth)).status == 204
    assert (await client.delete(f"/api/projects/{pid}/providers/openai", headers=auth)).status == 404


async def test_member_reads_but_cannot_write(client):
    admin = h(await login(client, "admin@a.test"))
    member = h(await login(client, "member@a.test"))
    assert (await client.post("/api/projects", json={"name": "p"}, headers=admin)).status == 201
    assert (await client.get("/api/projects", headers=member)).status == 200
    r = await client.post("/api/projects", json={"name": "q"}, headers=member)
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"


async def test_team_members_and_teams(client):
    auth = h(await login(client, "admin@a.test"))
    r = await client.post("/api/team", json={"email": "new@a.test", "role": "member"}, headers=auth)
    assert r.status == 201
    user = await r.json()
    assert len(user["password"]) >= 12 and "password_hash" not in user
    await login(client, "new@a.test", user["password"])
    team = await (await client.post("/api/teams", json={"name": "ml"}, headers=auth)).json()
    r = await client.post(f"/api/teams/{team['id']}/members", json={"user_id": user["id"], "role": "admin"}, headers=auth)
    assert r.status == 201
    got = await (await client.get(f"/api/teams/{team['id']}", headers=auth)).json()
    assert got["members"][0]["email"] == "new@a.test" and got["members"][0]["role"] == "admin"
    r = await client.post("/api/projects", json={"name": "p", "team_id": team["id"]}, headers=auth)
    assert (await r.json())["team_id"] == team["id"]
    members = await (await client.get("/api/team", headers=auth)).json()
    assert members["total"] == 3
    assert (await client.delete(f"/api/team/{user['id']}", headers=auth)).status == 204


async def test_me_refresh_and_logout(client):
    tokens = await login(client, "admin@a.test")
    auth = h(tokens)
    me = await (await client.get("/api/auth/me", headers=auth)).json()
    assert me["email"] == "admin@a.test" and me["role"] == "admin" and me["org_name"] == "org-a"
    r = await client.post("/api/auth/refresh", json={"refresh_token": tokens["_refresh"]})
    assert r.status == 200
    fresh = await r.json()
    # rotation: the old refresh token is spent
    assert (await client.post("/api/auth/refresh", json={"refresh_token": tokens["_refresh"]})).status == 401
    # an access token is not a refresh token and vice versa
    assert (await client.post("/api/auth/refresh", json={"refresh_token": fresh["access_token"]})).status == 401
    assert (await client.get("/api/auth/me", headers={"Authorization": f"Bearer {fresh['refresh_token']}"})).status == 401
    assert (await client.post("/api/auth/logout", headers=auth)).status == 204
    assert (await client.get("/api/auth/me", headers=auth)).status == 401
