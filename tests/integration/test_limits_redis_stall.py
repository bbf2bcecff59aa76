"""Redis stalled (CLIENT PAUSE) or stopped (SIGSTOP) mid-load (issue 11): each limit follows its fail
mode within the state timeout, no 500, and counting resumes by itself once Redis answers again."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from gateway.config import StateConfig
from gateway.pipeline import build_chain
from gateway.pricing import Pricing
from gateway.reply import Outcome
from gateway.schema import convert
from gateway.state import open_state
from gateway.testing import ScriptedNext, completion, make_services
from plugins.middleware.budget import Budget, BudgetConfig
from plugins.middleware.ratelimit import RateLimit, RateLimitConfig
from tests.integration.test_limits_redis_outage import call

TIMEOUT = 0.05


@pytest.mark.parametrize("fault", ["client_pause", "sigstop"])
async def test_stalled_redis_follows_fail_modes_within_the_timeout_and_recovers(redis_server, fault) -> None:
    state = await open_state(StateConfig(url=redis_server.url, timeout=TIMEOUT))
    services = make_services(state=state, pricing=Pricing({"mock-1": {"input": 1, "output": 1}}))
    rl = RateLimit(convert(RateLimitConfig, {"plans": {"p": {"rpm": 100000}}}), services)  # fail open (default)
    budget = Budget(convert(BudgetConfig, {"project": {"monthly_usd": 1000}}), services)  # fail closed (default)
    rl_only = build_chain([rl], ScriptedNext(json=completion("ok")))
    chain = build_chain([rl, budget], ScriptedNext(json=completion("ok")))

    async def timed(handler) -> tuple[int, float]:
        t0 = time.perf_counter()
        reply = await handler(call())
        for hook in reply.hooks:
            await hook(Outcome(status=reply.status, ended="complete", cost_micros=15))
        return reply.status, time.perf_counter() - t0

    try:
        healthy = [await timed(chain) for _ in range(20)]
        assert {s for s, _ in healthy} == {200}
        base_p99 = sorted(t for _, t in healthy)[-1]
        if fault == "client_pause":
            redis_server.pause(3000)
        else:
            redis_server.proc.send_signal(signal.SIGSTOP)
        stalled_rl = [await timed(rl_only) for _ in range(10)]
        stalled = [await timed(chain) for _ in range(10)]
        assert {s for s, _ in stalled_rl} == {200}  # rate limit: fail open
        assert {s for s, _ in stalled} == {503}  # budget: fail closed, never a 500
        times = sorted(t for _, t in stalled_rl + stalled)
        worst = times[-1]
        # one probe per fail-fast window waits out the timeout; the other decisions fail at once
        assert worst <= TIMEOUT + base_p99 + 0.02, worst
        assert times[len(times) // 2] < 0.01  # the median stalled request is not delayed
        if fault == "sigstop":
            redis_server.proc.send_signal(signal.SIGCONT)
        t_back = time.monotonic()
        while (await timed(chain))[0] != 200:
            assert time.monotonic() - t_back < 6.0, "no recovery"
            await asyncio.sleep(0.05)
        recovered = time.monotonic() - t_back
        print(f"\n{fault}: healthy p99 {base_p99 * 1000:.1f} ms, worst stalled {worst * 1000:.1f} ms, recovered after "
              f"{recovered:.2f} s (CLIENT PAUSE lasts 3 s)" if fault == "client_pause" else
              f"\n{fault}: healthy p99 {base_p99 * 1000:.1f} ms, worst stalled {worst * 1000:.1f} ms, recovered {recovered:.2f} s after SIGCONT")
        assert recovered < (3.5 if fault == "client_pause" else 5.0)
    finally:
        if redis_server.proc and redis_server.proc.poll() is None:
            redis_server.proc.send_signal(signal.SIGCONT)
        await state.close()
