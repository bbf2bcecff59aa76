"""Property: the limiter agrees with a reference sliding-window model, step by step.

Random programs of (replica, cost, clock advance) run against memory and the real Lua
on a real redis-server (two clients = two replicas). Agreement on every decision means
both "never more than the limit in any window" and "no false rejections".
"""
from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.state import MemoryState, RateLimit
from gateway.state.redis import RedisState

WINDOW = 1000

programs = st.tuples(
    st.integers(1, 10),  # limit
    st.lists(st.tuples(st.integers(0, 1), st.integers(1, 4), st.integers(0, 400)), min_size=1, max_size=60),
)


def reference(limit: int, program: list[tuple[int, int, int]]) -> list[bool]:
    log: list[tuple[int, int]] = []
    now, out = 0, []
    for _replica, cost, advance in program:
        now += advance
        in_window = sum(c for t, c in log if t > now - WINDOW)
        ok = in_window + cost <= limit
        if ok:
            log.append((now, cost))
        out.append(ok)
    # the invariant itself, checked on the model's own admissions
    for t, _ in log:
        assert sum(c for u, c in log if t - WINDOW < u <= t) <= limit
    return out


async def run(states: list, clock: list[float], limit: int, program: list[tuple[int, int, int]]) -> list[bool]:
    key = f"p:{uuid.uuid4().hex}:tpm"
    out = []
    for i, (replica, cost, advance) in enumerate(program):
        clock[0] += advance / 1000
        d = await states[replica % len(states)].rate_admit(f"r{i}", [RateLimit(key, limit, WINDOW, cost)])
        out.append(d.admitted)
    return out


@settings(max_examples=300, deadline=None)
@given(programs)
def test_memory_limiter_matches_the_reference_model(case) -> None:
    limit, program = case
    clock = [1_800_000_000.0]
    state = MemoryState(clock=lambda: clock[0])
    assert asyncio.run(run([state], clock, limit, program)) == reference(limit, program)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=programs)
def test_redis_limiter_across_two_replicas_matches_the_reference_model(redis_server, case) -> None:
    limit, program = case
    clock = [1_800_000_000.0]

    async def main() -> list[bool]:
        states = [RedisState(redis_server.url, timeout=1.0, clock=lambda: clock[0]) for _ in range(2)]
        try:
            return await run(states, clock, limit, program)
        finally:
            for s in states:
                await s.close()

    assert asyncio.run(main()) == reference(limit, program)
