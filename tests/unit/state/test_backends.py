"""The State contract, run against memory and a real redis-server (same expectations)."""
from __future__ import annotations

import asyncio

from gateway.state import BudgetScope, RateLimit
from gateway.state.redis import RedisState

FAR = 4_000_000_000_000  # an expiry far in the future (ms)


async def test_burst_admits_exactly_the_limit(backend) -> None:
    lim = [RateLimit("p:1:rpm", 20, 60_000)]
    got = await asyncio.gather(*(backend.rate_admit(f"r{i}", lim) for i in range(100)))
    assert sum(d.admitted for d in got) == 20
    refused = [d for d in got if not d.admitted]
    assert all(d.remaining == [0] and d.failing == 0 for d in refused)
    assert all(d.reset_ms[0] == d.now_ms + 60_000 for d in refused)  # the oldest admission leaves then


async def test_sliding_window_frees_capacity_as_entries_age_out(backend, clock) -> None:
    lim = [RateLimit("p:1:rpm", 3, 1000)]
    for i in range(3):
        assert (await backend.rate_admit(f"a{i}", lim)).admitted
        clock.advance(0.3)
    # t=0.9: window holds admissions at 0, 0.3, 0.6
    assert not (await backend.rate_admit("b", lim)).admitted
    clock.advance(0.1)  # t=1.0: the one at 0 is out (window is (now-1000, now])
    d = await backend.rate_admit("c", lim)
    assert d.admitted and d.remaining == [0]


async def test_a_charge_counts_in_the_window_and_ages_out_with_it(backend, clock) -> None:
    tpm = [RateLimit("p:1:tpm", 100, 1000, cost=10)]
    assert (await backend.rate_admit("a", tpm)).admitted  # 10 used
    await backend.rate_charge("a:u", "p:1:tpm", 1000, 85)  # the answer used 85 more than estimated
    d = await backend.rate_admit("b", tpm)
    assert not d.admitted and d.remaining == [5]  # 95 used; 10 more would exceed 100
    clock.advance(1.0)  # both the admission and the charge leave the window
    d = await backend.rate_admit("c", tpm)
    assert d.admitted and d.remaining == [90]


async def test_limits_are_decided_together_all_or_nothing(backend) -> None:
    small, big = RateLimit("k:1:rpm", 1, 60_000), RateLimit("p:1:rpm", 10, 60_000)
    assert (await backend.rate_admit("a", [big, small])).admitted
    d = await backend.rate_admit("b", [big, small])
    assert not d.admitted and d.failing == 1
    d = await backend.rate_admit("c", [big])
    assert d.admitted and d.remaining == [8]  # the refused request took nothing from `big`


async def test_weighted_costs_and_monthly_fixed_window(backend, clock) -> None:
    tpm = RateLimit("p:1:tpm", 100, 60_000, cost=60)
    assert (await backend.rate_admit("a", [tpm])).admitted
    d = await backend.rate_admit("b", [tpm])
    assert not d.admitted and d.remaining == [40]
    month = RateLimit("p:1:q:m203001", 2, 0, 1, FAR)
    assert [(await backend.rate_admit(f"m{i}", [month])).admitted for i in range(3)] == [True, True, False]
    d = await backend.rate_admit("m9", [month])
    assert d.reset_ms == [FAR] and d.remaining == [0]


async def test_budget_reserve_settle_release_and_expiry(backend, clock) -> None:
    scope = [BudgetScope("p:1:m203001", 1000, FAR)]
    assert (await backend.budget_reserve("a", 10, scope, 5000)).status == "unseeded"
    assert await backend.budget_seed(scope[0], 100) == 100
    assert await backend.budget_seed(scope[0], 0) == 100  # seeding again never lowers spend
    assert (await backend.budget_reserve("a", 600, scope, 5000)).status == "ok"
    r = await backend.budget_reserve("b", 301, scope, 5000)
    assert (r.status, r.spent, r.reserved) == ("over", 100, 600)
    assert await backend.budget_settle("a", 250, scope) == [350]
    assert await backend.budget_settle("a", 0, scope) == [350]  # settling twice moves nothing
    assert (await backend.budget_reserve("c", 650, scope, 5000)).status == "ok"
    assert await backend.budget_settle("c", 0, scope) == [350]  # released
    assert (await backend.budget_reserve("d", 650, scope, 5000)).status == "ok"
    clock.advance(6)  # the replica holding "d" died: its hold expires
    assert (await backend.budget_reserve("e", 650, scope, 5000)).status == "ok"
    got = await backend.budget_get(scope[0].key)
    assert (got.spent, got.reserved, got.seeded) == (350, 650, True)
    assert await backend.budget_seed(scope[0], 500, rebuild=True) == 500


async def test_a_free_model_reserves_and_settles_zero(backend, clock) -> None:
    """A model with no price (Ollama, a local mock) reserves 0 micro-USD. Redis refuses HINCRBY by "-0",
    which Lua's -0 becomes: releasing such a hold failed in the settle script (every request: budget
    "unavailable" warnings) and, once one expired, in the reserve script (every request refused)."""
    scope = [BudgetScope("p:free:m203001", 1000, FAR)]
    await backend.budget_seed(scope[0], 0)
    assert (await backend.budget_reserve("a", 0, scope, 5000)).status == "ok"
    assert await backend.budget_settle("a", 0, scope) == [0]
    assert (await backend.budget_reserve("b", 0, scope, 5000)).status == "ok"
    assert await backend.budget_settle("b", 7, scope) == [7]
    assert (await backend.budget_reserve("c", 0, scope, 5000)).status == "ok"  # never settled: it expires
    clock.advance(6)
    assert (await backend.budget_reserve("d", 0, scope, 5000)).status == "ok"  # releases "c" first
    got = await backend.budget_get(scope[0].key)
    assert (got.spent, got.reserved) == (7, 0)


async def test_budget_reservation_spans_every_scope(backend) -> None:
    p, k = BudgetScope("p:1:d20300101", 1000, FAR), BudgetScope("k:1:d20300101", 100, FAR)
    for s in (p, k):
        await backend.budget_seed(s, 0)
    r = await backend.budget_reserve("a", 150, [p, k], 5000)
    assert (r.status, r.failing) == ("over", 1)
    assert (await backend.budget_get(p.key)).reserved == 0  # nothing held in the scope that had room


async def test_inflight_slots_are_bounded_and_leases_expire(backend, clock) -> None:
    got = await asyncio.gather(*(backend.inflight_acquire("openai:key1", 3, f"l{i}", 1000) for i in range(10)))
    assert sum(ok for ok, _ in got) == 3
    holder = next(f"l{i}" for i, (ok, _) in enumerate(got) if ok)  # arrival order is the server's
    assert await backend.inflight_release("openai:key1", holder) == 2
    assert (await backend.inflight_acquire("openai:key1", 3, "x", 1000))[0]
    assert not (await backend.inflight_acquire("openai:key1", 3, "y", 1000))[0]
    clock.advance(1.5)
    assert (await backend.inflight_acquire("openai:key1", 3, "z", 1000)) == (True, 1)


async def test_two_independent_clients_share_one_redis_exactly(redis_server) -> None:
    """Two replicas (separate pools) racing: the script, not the client, decides."""
    a, b = RedisState(redis_server.url, timeout=1.0), RedisState(redis_server.url, timeout=1.0)
    try:
        lim = [RateLimit("p:x:rpm", 20, 60_000)]
        got = await asyncio.gather(*(s.rate_admit(f"r{i}", lim) for i, s in enumerate([a, b] * 50)))
        assert sum(d.admitted for d in got) == 20
    finally:
        await a.close()
        await b.close()
