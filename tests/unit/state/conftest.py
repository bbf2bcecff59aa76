"""Backends under test: memory and a real redis-server, both driven by a fake clock."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from gateway.state import MemoryState


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryState(clock=clock)
        return
    from gateway.state.redis import RedisState

    server = request.getfixturevalue("redis_server")
    state = RedisState(server.url, timeout=1.0, clock=clock)
    yield state
    await state.close()
