"""After creation, no plaintext API key or provider key is in the SQLite file, its WAL, the logs or list responses."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.unit.admin.kit import h, login, make_app, make_env

PROVIDER_SECRET = "sk-live-PROVIDERSECRET-0123456789abcdefXYZ"


def _db_bytes(tmp_path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = tmp_path / f"watchllm.db{suffix}"
        if p.exists():
            out += p.read_bytes()
    return out


@pytest.fixture
async def env(tmp_path):
    return await make_env(tmp_path)


async def test_plaintext_secrets_are_nowhere_at_rest(aiohttp_client, env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(make_app(env))
    auth = h(await login(client, "admin@a.test"))
    pid = (await (await client.post("/api/projects", json={"name": "p"}, headers=auth)).json())["id"]
    keys = [(await (await client.post(f"/api/projects/{pid}/keys", json={"test": t}, headers=auth)).json())["key"] for t in (False, True)]
    r = await client.post(f"/api/projects/{pid}/providers", json={"provider": "openai", "api_key": PROVIDER_SECRET}, headers=auth)
    assert r.status == 201
    listings = ""
    for path in (f"/api/projects/{pid}/keys", f"/api/projects/{pid}/providers", f"/api/projects/{pid}", "/api/projects"):
        listings += await (await client.get(path, headers=auth)).text()

    raw = _db_bytes(tmp_path)
    assert (tmp_path / "watchllm.db-wal").exists() and len(raw) > 0
    assert b"lgw_proj_" not in raw or all(k.encode() not in raw for k in keys)
    for secret in [*keys, PROVIDER_SECRET]:
        tail = secret[-43:] if secret.startswith("lgw_") else secret  # token_urlsafe(32), which may hold "_"
        for needle in (secret, tail, tail[:16], tail[-16:]):
            assert needle.encode() not in raw, f"found part of a secret in the db: {needle[:6]}..."
            assert needle not in listings
            assert needle not in caplog.text
    # the secrets are really there, just sealed or hashed: the hash column holds 32 bytes per key
    rows = await env.services.store.fetchall("SELECT length(secret_hash) AS n FROM api_keys")
    assert [r["n"] for r in rows] == [32, 32]


async def test_swapped_provider_ciphertexts_do_not_decrypt(env):
    from gateway.crypto import DecryptError, MasterKeys

    master = MasterKeys.from_env()
    store = env.services.store
    org = env.orgs["a"].org_id
    p1 = await store.projects.create(org_id=org, name="one")
    p2 = await store.projects.create(org_id=org, name="two")
    b1, kid = master.seal("sk-one-xxxxxxxx", project_id=p1["id"], provider="openai")
    b2, _ = master.seal("sk-two-xxxxxxxx", project_id=p2["id"], provider="openai")
    await store.provider_keys.put(p1["id"], "openai", b2, kid, "")  # swapped
    await store.provider_keys.put(p2["id"], "openai", b1, kid, "")
    for p in (p1, p2):
        blob = (await store.provider_keys.ciphertexts(p["id"]))["openai"]
        with pytest.raises(DecryptError):
            master.unseal(blob, project_id=p["id"], provider="openai")
    # and under another provider name
    with pytest.raises(DecryptError):
        master.unseal(b1, project_id=p1["id"], provider="anthropic")
    await store.close()


def test_master_key_rotation_unseals_old_blobs_and_reseals():
    import base64

    from gateway.crypto import MasterKeys

    old_key, new_key = b"o" * 32, b"n" * 32
    old = MasterKeys(old_key)
    blob, _ = old.seal("sk-rotate-me", project_id="p", provider="openai")
    env = {"WATCHLLM_MASTER_KEY": base64.b64encode(new_key).decode(), "WATCHLLM_MASTER_KEYS_OLD": base64.b64encode(old_key).decode()}
    rotated = MasterKeys.from_env(env)
    assert rotated.needs_reseal(blob)
    plain = rotated.unseal(blob, project_id="p", provider="openai")
    fresh, kid = rotated.seal(plain, project_id="p", provider="openai")
    assert kid == rotated.active_id and not rotated.needs_reseal(fresh)
    assert MasterKeys(new_key).unseal(fresh, project_id="p", provider="openai") == "sk-rotate-me"
