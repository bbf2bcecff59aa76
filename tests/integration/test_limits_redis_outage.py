"""Redis killed mid-run: each limit follows its fail mode; counting resumes without a restart."""
from __future__ import annotations

import asyncio
import time

from gateway import GatewayError
from gateway.call import ApiKeyInfo, Project
from gateway.pipeline import build_chain
from gateway.pricing import Pricing
from gateway.schema import convert
from gateway.state import open_state
from gateway.config import StateConfig
from gateway.testing import ScriptedNext, completion, make_call, make_services
from plugins.middleware.budget import Budget, BudgetConfig
from plugins.middleware.ratelimit import RateLimit, RateLimitConfig


def call():
    return make_call({"model": "mock", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
                     project=Project(id="proj_1", plan="p"), key=ApiKeyInfo(id="k1", project_id="proj_1"))


async def test_redis_killed_mid_run_fail_modes_then_recovery_within_5s(redis_server) -> None:
    state = await open_state(StateConfig(url=redis_server.url, timeout=0.05))
    services = make_services(state=state, pricing=Pricing({"mock-1": {"input": 1, "output": 1}}))
    rl = RateLimit(convert(RateLimitConfig, {"plans": {"p": {"rpm": 1000}}}), services)
    rl_closed = RateLimit(convert(RateLimitConfig, {"plans": {"p": {"rpm": 1000}}, "fail_mode": "closed"}), services)
    budget = Budget(convert(BudgetConfig, {"project": {"monthly_usd": 1}}), services)
    chain = build_chain([rl, budget], ScriptedNext(json=completion("ok")))

    async def status(handler) -> int:
        reply = await handler(call())
        for hook in reply.hooks:  # settle like the writer would
            from gateway.reply import Outcome
            await hook(Outcome(status=reply.status, ended="complete", cost_micros=15))
        return reply.status

    try:
        assert [await status(chain) for _ in range(5)] == [200] * 5
        redis_server.kill()
        # rate limit fails open, budget fails closed: 503, never a 500, each within the timeout
        t0 = time.perf_counter()
        got = [await status(chain) for _ in range(10)]
        per_call = (time.perf_counter() - t0) / 10
        assert got == [503] * 10 and rl.stats["fail_open"] == 10 and budget.stats["fail_closed"] == 10
        assert per_call < 0.05 * 4 + 0.005
        assert state.failures["rate_admit"] >= 10 and state.failures["budget_reserve"] >= 10
        try:
            await rl_closed(call(), ScriptedNext(text="x"))
            raise AssertionError("fail-closed rate limit admitted while Redis was down")
        except GatewayError as err:
            assert err.status == 503
        redis_server.start()
        t_back = time.monotonic()
        while True:
            if await status(chain) == 200:
                break
            assert time.monotonic() - t_back < 5.0, "no recovery within 5 s"
            await asyncio.sleep(0.05)
        recovered_in = time.monotonic() - t_back
        # counting resumed: the new Redis holds this request's admission and its spend
        assert (await budget.spend("proj_1"))["spent_micros"] >= 15
        before = rl.stats["fail_open"]
        assert [await status(chain) for _ in range(5)] == [200] * 5 and rl.stats["fail_open"] == before
        assert recovered_in < 5.0
    finally:
        await state.close()
