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
