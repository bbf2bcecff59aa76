"""N bad passwords lock the account (423) for M minutes, even against the right password; the clock is injected."""
from __future__ import annotations

import pytest

from tests.unit.admin.kit import PASSWORD, make_app, make_env


@pytest.fixture
async def env(tmp_path):
    return await make_env(tmp_path)  # max_failures=3, lockout=600 s, window=600 s


@pytest.fixture
async def client(aiohttp_client, env):
    return await aiohttp_client(make_app(env))


async def _login(client, email, password):
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_lockout_after_n_failures_then_unlock_after_m_minutes(client, env):
    email = "admin@a.test"
    assert (await _login(client, email, "wrong-1")).status == 401
    assert (await _login(client, email, "wrong-2")).status == 401
    r = await _login(client, email, "wrong-3")
    assert r.status == 423 and (await r.json())["error"]["code"] == "account_locked"
    assert int(r.headers["Retry-After"]) == 600
    env.clock.now += 300
    r = await _login(client, email, PASSWORD)
    assert r.status == 423  # the right password during lockout is still refused
    assert int(r.headers["Retry-After"]) == 300
    env.clock.now += 301
    assert (await _login(client, email, PASSWORD)).status == 200
    # success cleared the counter: two more failures do not lock
    assert (await _login(client, email, "wrong")).status == 401
    assert (await _login(client, email, "wrong")).status == 401
    assert (await _login(client, email, PASSWORD)).status == 200


async def test_lockout_is_per_account(client, env):
    for _ in range(3):
        await _login(client, "admin@a.test", "nope")
    assert (await _login(client, "admin@a.test", PASSWORD)).status == 423
    assert (await _login(client, "admin@b.test", PASSWORD)).status == 200


async def test_failures_outside_the_window_do_not_add_up(client, env):
    assert (await _login(client, "admin@a.test", "x")).status == 401
    assert (await _login(client, "admin@a.test", "x")).status == 401
    env.clock.now += 601
    assert (await _login(client, "admin@a.test", "x")).status == 401
    assert (await _login(client, "admin@a.test", PASSWORD)).status == 200


async def test_unknown_email_answers_like_a_wrong_password(client, env):
    r1 = await _login(client, "nobody@a.test", "x")
    r2 = await _login(client, "admin@a.test", "x")
    assert r1.status == r2.status == 401 and await r1.text() == await r2.text()
    for _ in range(2):
        await _login(client, "nobody@a.test", "x")
    assert (await _login(client, "nobody@a.test", "x")).status == 423  # no enumeration through lockout either


async def test_bad_login_bodies_are_400(client):
    assert (await client.post("/api/auth/login", data=b"nope")).status == 400
    assert (await client.post("/api/auth/login", json={"email": "a@b.c"})).status == 400
    assert (await client.post("/api/auth/login", json={"email": 5, "password": "x"})).status == 400
