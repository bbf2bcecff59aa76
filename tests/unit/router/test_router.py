"""The router end to end on fake providers: fallbacks, breakers, timeouts, Retry-After, streams."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.reply import Reply
from gateway.testing import ScriptedNext, drive, make_call
from plugins.middleware.router.breaker import CLOSED, OPEN

from .conftest import FakeProvider, build

BODY = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}
nxt = ScriptedNext(text="never used")  # the router is terminal


def call(**kw: Any):  # type: ignore[no-untyped-def]
    return make_call({**BODY, **kw})


async def run(router, **kw: Any):  # type: ignore[no-untyped-def]
    c = call(**kw)
    try:
        reply = await router(c, nxt)
    except GatewayError as err:  # what the chain's error boundary does
        reply = Reply.from_error(err)
    return c, await drive(reply, c)


def two_aliases(primary: FakeProvider, backup: FakeProvider, **opts: Any):  # type: ignore[no-untyped-def]
    models = {"main": {"targets": ["bad/m1"], "fallbacks": ["backup"]}, "backup": {"targets": ["good/m2"]}}
    return build(models, {"bad": primary, "good": backup}, **opts)


async def test_primary_always_5xx_every_request_succeeds_via_the_fallback_and_the_breaker_stops_attempts() -> None:
    bad, good = FakeProvider(500), FakeProvider("ok")
    router = two_aliases(bad, good, breaker_failures=5)
    attempts = []
    for _ in range(50):
        c, res = await run(router)
        assert res.outcome.ok and c.facts.provider == "good" and c.facts.model_served == "m2"
        attempts.append(c.facts.attempts)
        assert c.facts.extra["route"][-1] == "good/m2"
    assert len(bad.calls) == 5  # opened after 5 consecutive failures, then 0 attempts to primary
    assert attempts[:5] == [2] * 5 and set(attempts[5:]) == {1}  # ≤ 1 extra attempt before it opened
    assert router.states["bad/m1"].breaker.state == OPEN


async def test_attempts_per_request_are_capped_by_max_attempts() -> None:
    provs = {n: FakeProvider(503) for n in ("a", "b", "c", "d")}
    router = build({"main": {"targets": ["a/m", "b/m", "c/m", "d/m"], "max_attempts": 3, "strategy": "fallback"}},
                   provs, breaker_failures=0, breaker_failure_rate=0, retry_budget_percent=0)
    c, res = await run(router)
    assert res.outcome.status == 502 and c.facts.attempts == 3
    assert sum(len(p.calls) for p in provs.values()) == 3
    assert [len(p.calls) for p in provs.values()] == [1, 1, 1, 0]


async def test_a_single_target_is_retried_with_backoff_up_to_max_attempts() -> None:
    p = FakeProvider(lambda n: 502 if n < 2 else "ok")
    router = build({"main": {"targets": ["a/m"], "max_attempts": 3}}, {"a": p})
    c, res = await run(router)
    assert res.outcome.ok and c.facts.attempts == 3
    gaps = [b - a for a, b in zip(p.calls, p.calls[1:])]
    assert all(g <= 0.26 for g in gaps)  # jittered, capped at 250 ms


async def test_every_target_open_fails_fast_with_503_service_unavailable() -> None:
    router = two_aliases(FakeProvider(500), FakeProvider(500), breaker_failures=2)
    for _ in range(3):
        await run(router)
    started = time.perf_counter()
    c, res = await run(router)
    assert (time.perf_counter() - started) < 0.01
    assert res.outcome.status == 503 and res.reply.error.code == "service_unavailable"
    assert c.facts.attempts == 0 and "Retry-After" in res.reply.headers


async def test_fail_open_tries_open_targets_anyway() -> None:
    bad, good = FakeProvider(lambda n: 500 if n < 2 else "ok"), FakeProvider(500)
    router = two_aliases(bad, good, breaker_failures=1, when_all_open="fail_open")
    await run(router)
    assert router.states["bad/m1"].breaker.state == OPEN and router.states["good/m2"].breaker.state == OPEN
    c, res = await run(router)
    assert res.outcome.ok and c.facts.provider == "bad"


async def test_half_open_probe_brings_traffic_back_after_the_cooldown() -> None:
    healthy = {"v": False}
    bad = FakeProvider(lambda n: "ok" if healthy["v"] else 500)
    router = two_aliases(bad, FakeProvider("ok"), breaker_failures=2, breaker_cooldown=0.2)
    for _ in range(3):
        await run(router)
    assert router.states["bad/m1"].breaker.state == OPEN
    healthy["v"] = True
    await asyncio.sleep(0.21)
    c, _ = await run(router)
    assert c.facts.provider == "bad" and router.states["bad/m1"].breaker.state == CLOSED


async def test_a_hung_upstream_is_cut_at_its_timeout_within_10_percent_then_falls_back() -> None:
    models = {"main": {"targets": [{"target": "hung/m", "timeout": 0.5}, "ok/m"], "strategy": "fallback"}}
    router = build(models, {"hung": FakeProvider("hang"), "ok": FakeProvider("ok")})
    started = time.perf_counter()
    c, res = await run(router)
    elapsed = time.perf_counter() - started
    assert res.outcome.ok and c.facts.provider == "ok" and c.facts.attempts == 2
    assert 0.45 <= elapsed <= 0.55, elapsed  # ±10%


async def test_a_hung_stream_is_cut_before_its_first_chunk() -> None:
    models = {"main": {"targets": [{"target": "hung/m", "timeout": 0.5}], "max_attempts": 1}}
    router = build(models, {"hung": FakeProvider("hang")})
    started = time.perf_counter()
    c, res = await run(router, stream=True)
    assert 0.45 <= time.perf_counter() - started <= 0.55  # ±10%
    assert res.outcome.status == 504 and res.reply.error.code == "provider_timeout"


async def test_the_deadline_includes_retries() -> None:
    models = {"main": {"targets": [{"target": "a/m", "timeout": 0.4}, {"target": "b/m", "timeout": 0.4},
                                   {"target": "c/m", "timeout": 0.4}], "deadline": 0.6, "strategy": "fallback"}}
    router = build(models, {n: FakeProvider("hang") for n in "abc"})
    started = time.perf_counter()
    c, res = await run(router)
    elapsed = time.perf_counter() - started
    assert res.outcome.status == 504 and 0.57 <= elapsed <= 0.66 and c.facts.attempts == 2


async def test_429_retry_after_in_fallback_mode_cools_the_target_and_falls_back_at_once() -> None:
    limited = FakeProvider(429, retry_after=1.0)
    router = two_aliases(limited, FakeProvider("ok"), retry_after="fallback")
    started = time.perf_counter()
    c, res = await run(router)
    assert res.outcome.ok and c.facts.provider == "good" and time.perf_counter() - started < 0.05
    br = router.states["bad/m1"].breaker
    assert br.state == OPEN and 0.9 < br.retry_in() <= 1.0
    c, _ = await run(router)
    assert c.facts.attempts == 1 and len(limited.calls) == 1  # cooled: not tried again


async def test_429_retry_after_in_honour_mode_waits_and_retries_the_same_target() -> None:
    p = FakeProvider(lambda n: 429 if n == 0 else "ok", retry_after=1.0)
    router = build({"main": {"targets": ["a/m"], "max_attempts": 2}}, {"a": p}, retry_after="honour")
    started = time.perf_counter()
    c, res = await run(router)
    elapsed = time.perf_counter() - started
    assert res.outcome.ok and c.facts.attempts == 2 and 1.0 <= elapsed < 1.3
    assert 1.0 <= p.calls[1] - p.calls[0] < 1.3


async def test_429_retry_after_above_the_cap_falls_back_even_in_honour_mode() -> None:
    router = two_aliases(FakeProvider(429, retry_after=30.0), FakeProvider("ok"), retry_after="honour", max_retry_after=5)
    started = time.perf_counter()
    c, res = await run(router)
    assert res.outcome.ok and c.facts.provider == "good" and time.perf_counter() - started < 0.05


async def test_429_with_nowhere_to_go_reaches_the_client_with_retry_after() -> None:
    router = build({"main": {"targets": ["a/m"]}}, {"a": FakeProvider(429, retry_after=2.0)})
    c, res = await run(router)
    assert res.outcome.status == 429 and res.reply.headers.get("Retry-After") == "2"


async def test_a_client_error_is_not_retried_and_does_not_open_the_breaker() -> None:
    p = FakeProvider(400)
    router = two_aliases(p, FakeProvider("ok"), breaker_failures=1)
    c, res = await run(router)
    assert res.outcome.status == 400 and len(p.calls) == 1 and c.facts.attempts == 1
    assert router.states["bad/m1"].breaker.state == CLOSED


async def test_context_window_error_moves_to_the_larger_model() -> None:
    models = {"main": {"targets": ["small/m"], "context_window_fallbacks": ["big"]}, "big": {"targets": ["large/m"]}}
    router = build(models, {"small": FakeProvider("context"), "large": FakeProvider("ok")})
    c, res = await run(router)
    assert res.outcome.ok and c.facts.provider == "large" and c.facts.attempts == 2


async def test_stream_error_before_the_first_chunk_is_retried_on_the_fallback() -> None:
    router = two_aliases(FakeProvider(503), FakeProvider("ok"))
    c, res = await run(router, stream=True)
    assert res.outcome.ok and c.facts.provider == "good" and "p3" in res.text


async def test_stream_failure_after_bytes_is_not_retried_and_ends_as_an_upstream_error() -> None:
    bad, good = FakeProvider(("cut", 2)), FakeProvider("ok")
    router = two_aliases(bad, good, breaker_failures=1)
    c, res = await run(router, stream=True)
    assert res.outcome.ended == "upstream_error" and res.outcome.error.code == "provider_error"
    assert res.text == "p0 p1 " and len(bad.calls) == 1 and good.calls == [] and c.facts.attempts == 1
    st = router.states["bad/m1"]
    assert st.in_flight == 0 and st.breaker.state == OPEN  # the broken stream counts against it


async def test_in_flight_is_released_when_a_stream_completes() -> None:
    router = build({"main": {"targets": ["a/m"]}}, {"a": FakeProvider("ok")})
    c = call(stream=True)
    reply = await router(c, nxt)
    assert router.states["a/m"].in_flight == 1
    await drive(reply, c, disconnect_after=1)
    assert router.states["a/m"].in_flight == 0


async def test_max_in_flight_spills_over_to_the_next_target() -> None:
    slow, other = FakeProvider(0.1), FakeProvider("ok")
    models = {"main": {"targets": [{"target": "slow/m", "max_in_flight": 2}, "other/m"], "strategy": "fallback"}}
    router = build(models, {"slow": slow, "other": other})
    results = await asyncio.gather(*(run(router) for _ in range(5)))
    assert Counter(c.facts.provider for c, _ in results) == {"slow": 2, "other": 3}
    assert slow.max_seen == 2 and all(c.facts.attempts == 1 for c, _ in results)


async def test_rpm_limit_spills_over_to_the_next_target() -> None:
    models = {"main": {"targets": [{"target": "a/m", "rpm": 3}, "b/m"], "strategy": "fallback"}}
    router = build(models, {"a": FakeProvider("ok"), "b": FakeProvider("ok")})
    providers = [(await run(router))[0].facts.provider for _ in range(5)]
    assert providers == ["a", "a", "a", "b", "b"]


async def test_unknown_alias_is_invalid_model() -> None:
    router = build({"main": {"targets": ["a/m"]}}, {"a": FakeProvider("ok")})
    with pytest.raises(GatewayError) as exc:
        await router(make_call({"model": "nope", "messages": []}), nxt)
    assert exc.value.code == "invalid_model"


async def test_weighted_alias_spreads_1000_requests_3_to_1() -> None:
    models = {"main": {"targets": [{"target": "a/m", "weight": 3}, {"target": "b/m", "weight": 1}]}}
    router = build(models, {"a": FakeProvider("ok"), "b": FakeProvider("ok")}, seed=11)
    seen = Counter([(await run(router))[0].facts.provider for _ in range(1000)])
    assert abs(seen["a"] / 1000 - 0.75) <= 0.05, seen


async def test_provider_view_shows_circuits_and_no_secrets() -> None:
    router = two_aliases(FakeProvider(500), FakeProvider("ok"), breaker_failures=1)
    await run(router)
    view = router.providers_view()
    by = {p["id"]: p for p in view["data"]}
    assert by["bad"]["targets"]["m1"]["state"] == "open" and by["bad"]["circuit"] == "open"
    assert by["good"]["circuit"] == "closed" and by["good"]["models"] == ["m2"]
    assert "api_key" not in str(view)


async def test_provider_health_probes_once_and_caches() -> None:
    good, slow = FakeProvider("ok"), FakeProvider(0.05)
    router = two_aliases(slow, good, health_cache_seconds=5)
    bodies = await asyncio.gather(*(router.providers_health() for _ in range(5)))
    assert len(good.calls) == 1 and len(slow.calls) == 1  # one shared probe run
    assert bodies[0]["status"] == "ok"
    again = await router.providers_health()
    assert again["cached"] and len(good.calls) == 1
    lat = {p["id"]: p["latency_ms"] for p in again["providers"]}
    assert lat["bad"] >= 50


async def test_router_overhead_per_request_is_small() -> None:
    """plan + bookkeeping + a fake provider that answers at once; the figure is printed for the report."""
    models = {"main": {"targets": [{"target": "a/m", "weight": 3}, {"target": "b/m", "weight": 1}], "fallbacks": ["backup"]},
              "backup": {"targets": ["c/m"]}}
    router = build(models, {"a": FakeProvider("ok"), "b": FakeProvider("ok"), "c": FakeProvider("ok")})

    async def direct(c):  # type: ignore[no-untyped-def]
        return await router.services.providers["a"].chat(c.body, router.routes["main"].mc.targets[0], c)

    n = 5000
    best = float("inf")
    for _ in range(3):  # CPU time, best of three: the test machine is shared
        calls = [call() for _ in range(n)]
        t0 = time.process_time()
        for c in calls:
            await direct(c)
        base = time.process_time() - t0
        calls = [call() for _ in range(n)]
        t0 = time.process_time()
        for c in calls:
            await router(c, nxt)
        best = min(best, (time.process_time() - t0 - base) / n * 1e6)
    print(f"router overhead: {best:.1f} µs CPU per request")
    assert best < 100


async def test_everything_failing_costs_few_upstream_attempts_per_client_request_at_steady_state() -> None:
    provs = {"a": FakeProvider(500), "b": FakeProvider(502)}
    router = build({"main": {"targets": ["a/m", "b/m"], "max_attempts": 3}}, provs, breaker_failures=5, breaker_cooldown=60)
    statuses = Counter()
    for _ in range(100):
        _, res = await run(router)
        statuses[res.outcome.status] += 1
    upstream = sum(len(p.calls) for p in provs.values())
    assert upstream / 100 <= 1.2 and upstream == 10  # 5 per target, then the breakers answer
    assert set(statuses) <= {502, 503} and statuses[503] >= 90
