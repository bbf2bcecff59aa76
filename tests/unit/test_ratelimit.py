"""ratelimit middleware: which limits apply, headers, 429/402 bodies, fail modes, sustained load."""
from __future__ import annotations

import asyncio
import time

import pytest

from gateway import GatewayError
from gateway.call import ApiKeyInfo, Project
from gateway.schema import convert
from gateway.state import MemoryState, StateUnavailable
from gateway.state.redis import RedisState
from gateway.testing import ScriptedNext, make_call, make_services
from plugins.middleware.ratelimit import RateLimit, RateLimitConfig

BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}


def limiter(state, **options) -> RateLimit:
    return RateLimit(convert(RateLimitConfig, options), make_services(state=state))


def project_call(plan: str = "free", settings: dict | None = None, key: str = "key_1", pid: str = "proj_1"):
    return make_call(dict(BODY), project=Project(id=pid, plan=plan, settings=settings or {}),
                     key=ApiKeyInfo(id=key, project_id=pid))


async def test_plan_limits_admit_then_refuse_with_headers_and_details() -> None:
    rl = limiter(MemoryState())
    for i in range(10):  # free: 10 per minute
        call = project_call()
        await rl(call, ScriptedNext(text="ok"))
        assert call.reply_headers["X-RateLimit-Limit"] == "10"
        assert call.reply_headers["X-RateLimit-Remaining"] == str(9 - i)
        assert int(call.reply_headers["X-RateLimit-Reset"]) >= time.time()
    call = project_call()
    with pytest.raises(GatewayError) as info:
        await rl(call, ScriptedNext(text="ok"))
    err = info.value
    assert (err.status, err.code) == (429, "rate_limit_exceeded")
    assert 1 <= int(err.headers["Retry-After"]) <= 60
    assert err.details["plan"] == "free" and err.details["limit"] == 10 and err.details["reset_at"] > time.time()
    assert call.reply_headers["X-RateLimit-Remaining"] == "0"


async def test_tenants_are_counted_apart_and_overrides_win() -> None:
    rl = limiter(MemoryState())
    for _ in range(10):
        await rl(project_call(pid="a"), ScriptedNext(text="ok"))
    await rl(project_call(pid="b"), ScriptedNext(text="ok"))  # b is not affected by a
    flat = project_call(pid="c", settings={"rpm": 2})
    await rl(flat, ScriptedNext(text="ok"))
    assert flat.reply_headers["X-RateLimit-Limit"] == "2"
    nested = project_call(pid="d", plan="pro", settings={"limits": {"rpm": 5, "key_rpm": 1}})
    await rl(nested, ScriptedNext(text="ok"))
    assert nested.reply_headers["X-RateLimit-Remaining"] == "0"  # the key limit (1) is the tightest
    with pytest.raises(GatewayError):
        await rl(project_call(pid="d", plan="pro", settings={"limits": {"rpm": 5, "key_rpm": 1}}), ScriptedNext(text="ok"))


async def test_monthly_quota_exhausted_is_402() -> None:
    rl = limiter(MemoryState(), plans={"tiny": {"rpm": 100, "monthly": 2}})
    for _ in range(2):
        await rl(project_call(plan="tiny"), ScriptedNext(text="ok"))
    with pytest.raises(GatewayError) as info:
        await rl(project_call(plan="tiny"), ScriptedNext(text="ok"))
    assert (info.value.status, info.value.code, info.value.details["window"]) == (402, "quota_exceeded", "month")


async def test_unauthenticated_calls_are_limited_per_ip() -> None:
    rl = limiter(MemoryState(), ip_rpm=1)
    await rl(make_call(dict(BODY), client_ip="10.0.0.1"), ScriptedNext(text="ok"))
    await rl(make_call(dict(BODY), client_ip="10.0.0.2"), ScriptedNext(text="ok"))
    with pytest.raises(GatewayError):
        await rl(make_call(dict(BODY), client_ip="10.0.0.1"), ScriptedNext(text="ok"))


async def test_tokens_per_minute_charge_the_real_usage_after_the_response() -> None:
    from gateway.testing import completion, drive

    state = MemoryState()
    rl = limiter(state, plans={"t": {"tpm": 1000}})
    call = project_call(plan="t")
    reply = await rl(call, ScriptedNext(json=completion("x", prompt_tokens=10, completion_tokens=590)))
    await drive(reply, call)
    assert call.reply_headers["X-RateLimit-Limit-Tokens"] == "1000"
    d = await state.rate_admit("probe", [rl.limits_for(project_call(plan="t"), time.time())[0][0]])
    assert d.remaining[0] == 1000 - 600 - 1  # the call: its real 600 tokens; the probe: its 1-token estimate


class DownState(MemoryState):
    async def rate_admit(self, rid, limits):  # type: ignore[override]
        raise StateUnavailable("down")


async def test_fail_open_admits_and_counts_fail_closed_refuses_with_503() -> None:
    rl = limiter(DownState())
    reply = await rl(project_call(), ScriptedNext(text="ok"))
    assert reply.status == 200 and rl.stats["fail_open"] == 1
    rl = limiter(DownState(), fail_mode="closed")
    with pytest.raises(GatewayError) as info:
        await rl(project_call(), ScriptedNext(text="ok"))
    assert (info.value.status, info.value.code, rl.stats["fail_closed"]) == (503, "service_unavailable", 1)


class Recording:
    """Wraps a backend and keeps the backend time of every admission."""

    def __init__(self, inner) -> None:
        self.inner, self.admitted_at = inner, []

    async def rate_admit(self, rid, limits):
        d = await self.inner.rate_admit(rid, limits)
        if d.admitted:
            self.admitted_at.append(d.now_ms)
        return d


def per_window(times: list[int], start: int, window_ms: int, n: int) -> list[int]:
    return [sum(1 for t in times if start + k * window_ms <= t < start + (k + 1) * window_ms) for k in range(n)]


async def test_sustained_twice_the_limit_admits_the_limit_per_window_on_memory() -> None:
    clock = [1_800_000_000.0]
    rec = Recording(MemoryState(clock=lambda: clock[0]))
    limit, window = 200, 60.0
    rl = limiter(rec, window_seconds=window, plans={"p": {"rpm": limit}})
    for _ in range(2 * limit * 3 + 10):  # evenly spaced at twice the limit
        try:
            await rl(project_call(plan="p"), ScriptedNext(text="ok"))
        except GatewayError:
            pass
        clock[0] += window / (2 * limit)
    counts = per_window(rec.admitted_at, rec.admitted_at[0], int(window * 1000), 3)
    assert all(0.99 * limit <= c <= limit for c in counts), counts


async def test_sustained_twice_the_limit_admits_the_limit_per_window_on_redis(redis_server) -> None:
    state = RedisState(redis_server.url, timeout=1.0)
    rec = Recording(state)
    limit, window = 100, 1.0
    rl = limiter(rec, window_seconds=window, plans={"p": {"rpm": limit}})
    loop = asyncio.get_running_loop()
    t0, interval = loop.time(), window / (2 * limit)

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i * interval - loop.time()))
        try:
            await rl(project_call(plan="p"), ScriptedNext(text="ok"))
        except GatewayError:
            pass

    try:
        await asyncio.gather(*(one(i) for i in range(int(2 * limit * 3.2))))
    finally:
        await state.close()
    counts = per_window(rec.admitted_at, rec.admitted_at[0], int(window * 1000), 3)
    assert all(0.99 * limit <= c <= limit for c in counts), counts


async def test_invalid_stored_limit_settings_fall_back_to_the_plan_instead_of_failing() -> None:
    """Settings stored before the admin API validated them (a string rpm) must not 500 every call."""
    rl = limiter(MemoryState())
    call = project_call(settings={"limits": {"rpm": "abc", "key_rpm": -3}, "tpm": [1]})
    await rl(call, ScriptedNext(text="ok"))
    assert call.reply_headers["X-RateLimit-Limit"] == "10"  # the free plan's rpm
    good = project_call(pid="p2", settings={"limits": {"rpm": 4}})
    await rl(good, ScriptedNext(text="ok"))
    assert good.reply_headers["X-RateLimit-Limit"] == "4"


async def test_a_project_whose_settings_change_gets_the_new_limit_at_once() -> None:
    """Limits are cached per project (gateway/memo.py) only while its settings object is the same:
    auth hands out a new Project when the admin API changed it."""
    rl = limiter(MemoryState())
    first = project_call(pid="m", settings={"rpm": 3})
    await rl(first, ScriptedNext(text="ok"))
    assert first.reply_headers["X-RateLimit-Limit"] == "3"
    again = make_call(dict(BODY), project=first.project, key=first.key)  # same Project object: cached
    await rl(again, ScriptedNext(text="ok"))
    assert again.reply_headers["X-RateLimit-Remaining"] == "1"
    changed = project_call(pid="m", settings={"rpm": 7})
    await rl(changed, ScriptedNext(text="ok"))
    assert changed.reply_headers["X-RateLimit-Limit"] == "7"


async def test_memory_window_merges_one_millisecond_and_keeps_nothing_for_the_garbage_collector() -> None:
    """Admissions in one millisecond share one entry of the sliding log; the log holds plain ints (no tuple per
    request for the cyclic GC to walk: at 3,000 req/s those made every gen-0 collection a 2-5 ms pause)."""
    import gc

    from gateway.state.base import RateLimit as Limit

    clock = [1_800_000_000.0]
    state = MemoryState(clock=lambda: clock[0])
    lim = Limit("p:x:rpm", 5, 60_000)
    for _ in range(3):  # the same millisecond
        assert (await state.rate_admit("r", [lim])).admitted
    clock[0] += 0.010
    d = await state.rate_admit("r", [lim])
    assert d.admitted and d.remaining == [1]
    log = state._logs["p:x:rpm"]
    assert list(log.times) == [1_800_000_000_000, 1_800_000_000_010] and list(log.costs) == [3, 1]
    assert not any(gc.is_tracked(x) for x in (*log.times, *log.costs))
    assert (await state.rate_admit("r", [lim])).admitted
    refused = await state.rate_admit("r", [lim])
    # the window frees the first three together, 60 s after their millisecond
    assert not refused.admitted and refused.reset_ms == [1_800_000_060_000]
    clock[0] += 59.990  # exactly 60 s after the first millisecond
    d = await state.rate_admit("r", [lim])
    assert d.admitted and d.remaining == [2]  # the three fell out together; the two of +10 ms stay, this one added
    assert list(log.costs) == [2, 1] and log.total == 3
