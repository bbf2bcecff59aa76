"""The auth middleware: who gets in, what a cache hit costs, how fast revocation is seen, test keys."""
from __future__ import annotations

import asyncio
import time

import pytest

from gateway.admin.project_routes import create_key
from gateway.crypto import MasterKeys
from gateway.errors import GatewayError
from gateway.store import open_store
from gateway.testing import ScriptedNext, make_call
from plugins.middleware.auth import PROVIDER_KEYS, Auth, AuthConfig
from tests.unit.admin.kit import MASTER_KEY, make_services

BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
CONFIG = {
    "providers": {"mock": {"type": "mock"}, "openai": {"type": "openai", "api_key": "sk-global"}},
    "models": {
        "mock": {"targets": ["mock/mock-1"]},
        "gpt": {"targets": ["openai/gpt-4o-mini"]},
        "mock-then-gpt": {"targets": ["mock/mock-1"], "fallbacks": ["gpt"]},
    },
}


class _Ctx:
    def __init__(self, store):
        self.store = store


@pytest.fixture
async def world(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHLLM_MASTER_KEY", MASTER_KEY)
    services = make_services(CONFIG)
    services.store = await open_store(f"sqlite:///{tmp_path}/t.db")
    org = await services.store.orgs.ensure()
    project = await services.store.projects.create(org_id=org["id"], name="demo", settings={"rpm": 10})
    yield services, project
    await services.store.close()


async def _auth(services, **opts) -> Auth:
    auth = Auth(AuthConfig(**opts), services)
    await auth.startup()
    return auth


async def _run(auth, key=None, *, header="Authorization", ip="10.0.0.1", body=BODY):
    headers = {} if key is None else ({header: f"Bearer {key}"} if header == "Authorization" else {header: key})
    call = make_call(dict(body), headers=headers, client_ip=ip)
    nxt = ScriptedNext(text="ok")
    try:
        reply = await auth(call, nxt)
    except GatewayError as err:
        return call, err
    return call, reply


async def test_valid_key_sets_project_and_key_from_either_header(world):
    services, project = world
    auth = await _auth(services)
    created = await create_key(_Ctx(services.store), project["id"])
    for header in ("Authorization", "X-API-Key"):
        call, reply = await _run(auth, created["key"], header=header)
        assert reply.status == 200
        assert call.project.id == project["id"] and call.project.settings == {"rpm": 10} and call.project.name == "demo"
        assert call.key.id == created["id"] and not call.key.is_test
    await auth.shutdown()


async def test_missing_malformed_unknown_and_wrong_secret_are_401_with_one_body(world):
    services, project = world
    auth = await _auth(services, failures_per_minute=100)
    key = (await create_key(_Ctx(services.store), project["id"]))["key"]
    _, missing = await _run(auth, None)
    assert missing.code == "invalid_api_key"
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown_id = key[:9] + "0" * 12 + key[21:]
    errs = [(await _run(auth, k))[1] for k in ("lgw_proj_short", "sk-openai", wrong_secret, unknown_id)]
    assert all(e.status == 401 and e.code == "invalid_api_key" for e in errs)
    assert len({str(e.body()) for e in errs}) == 1
    await auth.shutdown()


async def test_required_false_lets_anonymous_calls_through_but_not_bad_keys(world):
    services, _ = world
    auth = await _auth(services, required=False)
    call, reply = await _run(auth, None)
    assert reply.status == 200 and call.project is None
    _, err = await _run(auth, "lgw_proj_000000000000_" + "a" * 43)
    assert err.status == 401
    await auth.shutdown()


async def test_cache_hit_runs_no_sql(world):
    services, project = world
    auth = await _auth(services, cache_ttl=60)
    key = (await create_key(_Ctx(services.store), project["id"]))["key"]
    lookups = 0
    real = services.store.api_keys.lookup

    async def counting(key_id):
        nonlocal lookups
        lookups += 1
        return await real(key_id)

    services.store.api_keys.lookup = counting
    results = await asyncio.gather(*(_run(auth, key) for _ in range(50)))  # concurrent misses share one lookup
    assert all(r.status == 200 for _, r in results)
    for _ in range(200):
        await _run(auth, key)
    assert lookups == 1
    await auth.shutdown()


async def test_revocation_is_seen_within_the_ttl_by_another_process(world, tmp_path):
    services, project = world
    key = await create_key(_Ctx(services.store), project["id"])
    # "process B": its own store connection on the same file and its own cache
    other = make_services(CONFIG)
    other.store = await open_store(f"sqlite:///{tmp_path}/t.db")
    auth_b = await _auth(other, cache_ttl=0.3)
    assert (await _run(auth_b, key["key"]))[1].status == 200
    assert await services.store.api_keys.revoke(key["id"], project["id"])
    revoked_at = time.monotonic()
    while (await _run(auth_b, key["key"]))[1].status == 200:
        assert time.monotonic() - revoked_at < 1.0
        await asyncio.sleep(0.02)
    assert time.monotonic() - revoked_at <= 0.3 + 0.1
    await auth_b.shutdown()
    await other.store.close()


async def test_revocation_in_the_same_process_is_immediate(world):
    services, project = world
    auth = await _auth(services, cache_ttl=60)
    key = await create_key(_Ctx(services.store), project["id"])
    assert (await _run(auth, key["key"]))[1].status == 200
    await services.store.api_keys.revoke(key["id"])
    services.extras["auth.keys"].invalidate(key["id"])  # what the admin API does on DELETE
    assert (await _run(auth, key["key"]))[1].status == 401
    await auth.shutdown()


async def test_expired_key_is_401(world):
    services, project = world
    auth = await _auth(services)
    key = await create_key(_Ctx(services.store), project["id"], expires_in=0.05)
    await asyncio.sleep(0.1)
    assert (await _run(auth, key["key"]))[1].status == 401
    await auth.shutdown()


async def test_last_used_is_batched_not_written_per_request(world):
    services, project = world
    auth = await _auth(services, last_used_flush=3600)
    key = await create_key(_Ctx(services.store), project["id"])
    writes = 0
    real = services.store.execute

    async def counting(sql, params=()):
        nonlocal writes
        writes += 1
        return await real(sql, params)

    services.store.execute = counting
    for _ in range(100):
        await _run(auth, key["key"])
    assert writes == 0
    assert (await services.store.api_keys.get(key["id"]))["last_used_at"] is None
    await auth.shutdown()  # flushes
    assert (await services.store.api_keys.get(key["id"]))["last_used_at"] is not None


async def test_failed_attempts_per_address_are_rate_limited(world):
    services, project = world
    auth = await _auth(services, failures_per_minute=5)
    good = (await create_key(_Ctx(services.store), project["id"]))["key"]
    statuses = [(await _run(auth, "lgw_proj_abcdefabcdef_" + "x" * 43, ip="6.6.6.6"))[1].status for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    _, err = await _run(auth, good, ip="6.6.6.6")
    assert err.code == "rate_limit_exceeded" and 1 <= int(err.headers["Retry-After"]) <= 60
    assert (await _run(auth, good, ip="7.7.7.7"))[1].status == 200
    auth.clock = lambda: time.monotonic() + 61
    assert (await _run(auth, good, ip="6.6.6.6"))[1].status == 200
    await auth.shutdown()


async def test_wrong_secrets_for_one_key_id_are_limited_across_addresses(world):
    services, project = world
    auth = await _auth(services, failures_per_minute=3)
    key = (await create_key(_Ctx(services.store), project["id"]))["key"]
    bad = key[:-1] + ("A" if key[-1] != "A" else "B")
    statuses = [(await _run(auth, bad, ip=f"10.1.0.{i}"))[1].status for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    await auth.shutdown()


async def test_test_keys_only_reach_mock_models_and_have_a_quota(world):
    services, project = world
    auth = await _auth(services, test_key_daily_requests=3)
    key = await create_key(_Ctx(services.store), project["id"], test=True)
    assert key["key"].startswith("lgw_test_")
    call, reply = await _run(auth, key["key"])
    assert reply.status == 200 and call.key.is_test and call.facts.extra["test_key"] is True
    for model in ("gpt", "mock-then-gpt", "openai/gpt-4o"):
        _, err = await _run(auth, key["key"], body={**BODY, "model": model})
        assert err.code == "forbidden", model
    assert (await _run(auth, key["key"]))[1].status == 200
    assert (await _run(auth, key["key"]))[1].status == 200
    _, err = await _run(auth, key["key"])
    assert err.code == "quota_exceeded" and err.status == 402
    await auth.shutdown()


async def test_project_provider_keys_are_decrypted_into_the_stash(world):
    services, project = world
    auth = await _auth(services)
    master = MasterKeys.from_env()
    blob, kid = master.seal("sk-own-0123456789", project_id=project["id"], provider="openai")
    await services.store.provider_keys.put(project["id"], "openai", blob, kid, "6789")
    key = (await create_key(_Ctx(services.store), project["id"]))["key"]
    call, reply = await _run(auth, key)
    assert reply.status == 200 and call.stash_get(PROVIDER_KEYS) == {"openai": "sk-own-0123456789"}
    assert "sk-own" not in repr(call.facts)
    await auth.shutdown()


async def test_a_ciphertext_moved_to_another_project_fails_closed(world):
    services, project = world
    other = await services.store.projects.create(org_id=project["org_id"], name="other")
    blob, kid = MasterKeys.from_env().seal("sk-own-0123456789", project_id=project["id"], provider="openai")
    await services.store.provider_keys.put(other["id"], "openai", blob, kid, "")
    auth = await _auth(services)
    key = (await create_key(_Ctx(services.store), other["id"]))["key"]
    _, err = await _run(auth, key)
    assert err.status == 503 and "sk-own" not in str(err.body())
    await auth.shutdown()


async def test_startup_without_a_store_fails_clearly():
    services = make_services(CONFIG)
    with pytest.raises(RuntimeError, match="store"):
        await Auth(AuthConfig(), services).startup()


async def test_cache_hit_cost(world, capsys):
    """Measured figure for the report: CPU per request on a cache hit (the layer alone)."""
    services, project = world
    auth = await _auth(services, cache_ttl=600)
    key = (await create_key(_Ctx(services.store), project["id"]))["key"]
    from gateway.reply import Reply

    done = Reply.json({})

    async def nxt(call):
        return done

    calls = [make_call(dict(BODY), headers={"Authorization": f"Bearer {key}"}, client_ip="1.2.3.4") for _ in range(20000)]
    await auth(calls[0], nxt)
    t0 = time.perf_counter()
    for c in calls:
        await auth(c, nxt)
    per = (time.perf_counter() - t0) / len(calls) * 1e6
    with capsys.disabled():
        print(f"\nauth cache hit: {per:.2f} us/request")
    assert per < 50
    await auth.shutdown()
