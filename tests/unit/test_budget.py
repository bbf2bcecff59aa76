"""budget middleware: reserve → settle, races at the edge, release, streams, seeding, fail modes."""
from __future__ import annotations

import asyncio
import random

import pytest

from gateway import GatewayError
from gateway.call import ApiKeyInfo, Project, Usage
from gateway.pricing import Pricing
from gateway.reply import Outcome
from gateway.schema import convert
from gateway.state import MemoryState, StateUnavailable
from gateway.state.redis import RedisState
from gateway.testing import ScriptedNext, completion, drive, make_call, make_services
from plugins.middleware.budget import Budget, BudgetConfig

PRICING = Pricing({"mock-1": {"input": 1, "output": 1}})  # 1 micro-USD per token


def budget(state, store_sum=None, **options) -> Budget:
    b = Budget(convert(BudgetConfig, options), make_services(state=state, pricing=PRICING))
    if store_sum is not None:
        async def source(kind, ident, period):
            return store_sum[0]
        b.spend_source = source
    return b


def call_for(settings: dict, max_tokens: int = 100, pid: str = "proj_1", team: str | None = None):
    return make_call({"model": "mock", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]},
                     project=Project(id=pid, team_id=team, settings=settings), key=ApiKeyInfo(id="key_1", project_id=pid))


async def finish(reply, call, cost_from_usage=True) -> Outcome:
    """What the HTTP writer does: the cost from the served usage, then the hooks."""
    usage = Usage.from_openai((reply.body or {}).get("usage")) if reply.status < 400 else None
    outcome = Outcome(status=reply.status, ended="complete" if reply.status < 400 else "error", usage=usage)
    outcome.cost_micros = PRICING.cost_micros("mock-1", usage)
    for hook in reply.hooks:
        await hook(outcome)
    return outcome


async def test_reserve_then_settle_the_real_cost() -> None:
    state = MemoryState()
    b = budget(state, project={"monthly_usd": "0.001"})  # 1000 micro-USD
    call = call_for({})
    reply = await b(call, ScriptedNext(json=completion("ok", prompt_tokens=10, completion_tokens=20)))
    key = b.scopes_for(call, __import__("time").time()).scopes[0].key
    assert (await state.budget_get(key)).reserved == 100 + 1 + 4  # max_tokens + prompt estimate
    await finish(reply, call)
    got = await state.budget_get(key)
    assert (got.spent, got.reserved) == (30, 0)
    assert (await b.spend("proj_1"))["spent_usd"] == "0.000030"


async def test_over_budget_is_402_with_details() -> None:
    b = budget(MemoryState(), project={"daily_usd": "0.000050"})
    with pytest.raises(GatewayError) as info:
        await b(call_for({}), ScriptedNext(text="never"))
    err = info.value
    assert (err.status, err.code) == (402, "budget_exceeded")
    assert err.details["budget"] == "0.000050" and err.details["period"] == "day" and err.details["scope"] == "project"
    assert err.details["spent"] == "0.000000" and err.details["reset_at"] > 0


async def test_tenant_settings_and_team_and_key_budgets_apply() -> None:
    b = budget(MemoryState(), teams={"t1": {"monthly_usd": "0.000050"}})
    with pytest.raises(GatewayError) as info:
        await b(call_for({}, team="t1"), ScriptedNext(text="x"))
    assert info.value.details["scope"] == "team"
    with pytest.raises(GatewayError) as info:
        await b(call_for({"budget": {"key_daily_usd": "0.00001"}}), ScriptedNext(text="x"))
    assert info.value.details["scope"] == "key"
    with pytest.raises(GatewayError) as info:
        await b(call_for({"budget_micros": 50, "budget_period": "day"}), ScriptedNext(text="x"))
    assert info.value.details["period"] == "day"
    await b(call_for({}), ScriptedNext(text="x"))  # no budget: passes


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_budget_edge_50_concurrent_requests_never_overspend(backend, request) -> None:
    """Remaining budget R; 50 requests each costing R/10 race: spend <= budget, no hold left, counter == sum."""
    if backend == "redis":
        state = RedisState(request.getfixturevalue("redis_server").url, timeout=1.0)
    else:
        state = MemoryState()
    limit, already = 10_000, 4_000  # remaining 6000; each request costs 600 -> total 30000 = 5x remaining
    store_sum = [already]
    b = budget(state, store_sum, project={"monthly_usd": "0.01"})
    settled: list[int] = []
    results: list[str] = []

    async def one(i: int) -> None:
        call = call_for({}, max_tokens=595)  # estimate 595 + 5 = 600 == actual

        class Upstream(ScriptedNext):
            async def __call__(self, c):
                await asyncio.sleep(random.random() * 0.02)
                return await super().__call__(c)

        try:
            reply = await b(call, Upstream(json=completion("x", prompt_tokens=5, completion_tokens=595)))
        except GatewayError as err:
            results.append(err.code)
            return
        outcome = await finish(reply, call)
        settled.append(outcome.cost_micros)
        results.append("ok")

    try:
        await asyncio.gather(*(one(i) for i in range(50)))
        scope = b.scopes_for(call_for({}), __import__("time").time()).scopes[0]
        got = await state.budget_get(scope.key)
    finally:
        await state.close()
    assert results.count("ok") == 10 and results.count("budget_exceeded") == 40
    assert got.spent <= limit and got.reserved == 0
    assert got.spent == already + sum(settled) == limit


async def test_failure_below_releases_the_hold_and_errors_settle_zero() -> None:
    state = MemoryState()
    b = budget(state, project={"monthly_usd": 1})

    async def boom(call):
        raise asyncio.CancelledError()

    call = call_for({})
    with pytest.raises(asyncio.CancelledError):
        await b(call, boom)
    key = b.scopes_for(call, __import__("time").time()).scopes[0].key
    assert (await state.budget_get(key)).reserved == 0
    with pytest.raises(GatewayError):  # raised below (the chain turns it into an error reply above)
        await b(call_for({}), ScriptedNext(error=GatewayError("provider_error", "upstream 500")))
    from gateway.pipeline import build_chain
    from gateway.testing import ScriptedNext as Next

    reply = await build_chain([b], Next(error=GatewayError("provider_error", "upstream 500")))(call_for({}))
    await finish(reply, call)
    got = await state.budget_get(key)
    assert (got.spent, got.reserved) == (0, 0)


async def test_stream_cut_by_the_client_still_settles() -> None:
    state = MemoryState()
    b = budget(state, project={"monthly_usd": 1})
    call = call_for({})
    chunks = [{"id": "c", "object": "chat.completion.chunk", "model": "mock-1",
               "choices": [{"index": 0, "delta": {"content": f"w{i}"}, "finish_reason": None}]} for i in range(5)]
    reply = await b(call, ScriptedNext(stream=chunks))
    driven = await drive(reply, call, disconnect_after=2)
    assert driven.outcome.ended == "client_gone"
    key = b.scopes_for(call, __import__("time").time()).scopes[0].key
    assert (await state.budget_get(key)).reserved == 0


async def test_lost_counters_are_seeded_from_the_store_not_reset(redis_server) -> None:
    state = RedisState(redis_server.url, timeout=1.0)
    store_sum = [7_000]
    b = budget(state, store_sum, project={"monthly_usd": "0.01"})
    try:
        reply = await b(call_for({}), ScriptedNext(json=completion("x", prompt_tokens=5, completion_tokens=95)))
        await finish(reply, call_for({}))
        assert (await b.spend("proj_1"))["spent_micros"] == 7_100
        store_sum[0] = 7_100
        redis_server.command("FLUSHALL")  # Redis lost everything
        assert (await b.spend("proj_1"))["seeded"] is False
        with pytest.raises(GatewayError):  # 7100 + 2996 > 10000: the old spend still counts
            await b(call_for({}, max_tokens=2991), ScriptedNext(text="x"))
        assert (await b.spend("proj_1"))["spent_micros"] == 7_100
        assert await b.rebuild("proj_1", 100) == 100  # the hardening work's hook
        await b(call_for({}, max_tokens=2991), ScriptedNext(text="x"))
    finally:
        await state.close()


class DownState(MemoryState):
    async def budget_reserve(self, *a, **k):  # type: ignore[override]
        raise StateUnavailable("down")


async def test_fail_closed_by_default_fail_open_when_asked() -> None:
    b = budget(DownState(), project={"monthly_usd": 1})
    with pytest.raises(GatewayError) as info:
        await b(call_for({}), ScriptedNext(text="x"))
    assert (info.value.status, info.value.code, b.stats["fail_closed"]) == (503, "service_unavailable", 1)
    b = budget(DownState(), project={"monthly_usd": 1}, fail_mode="open")
    reply = await b(call_for({}), ScriptedNext(text="x"))
    assert reply.status == 200 and b.stats["fail_open"] == 1


async def test_invalid_stored_budget_settings_keep_the_defaults_instead_of_failing() -> None:
    """Settings stored before the admin API validated them must not 500 every call of the project."""
    state = MemoryState()
    b = budget(state, store_sum=[0], project={"monthly_usd": "0.001"})
    call = call_for({"budget": {"monthly_usd": "lots", "daily_usd": [1]}, "budget_micros": "x"})
    reply = await b(call, ScriptedNext(json=completion("ok", prompt_tokens=10, completion_tokens=20)))
    assert reply.status == 200
    scopes = b.scopes_for(call, __import__("time").time()).scopes
    assert [s.limit for s in scopes] == [1000]  # the config default (monthly) still applies
