"""Fakes for the router's unit tests: providers whose behaviour each test scripts."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest

from gateway.call import Call, Target
from gateway.errors import ProviderError, provider_error_from_status
from gateway.testing import completion, make_services
from plugins.middleware.router import Router, RouterConfig


class FakeProvider:
    """``behaviour(n)`` for the n-th call (0-based) returns "ok", an int status, "hang", a float (latency s)
    or ("cut", k) for a stream that breaks after k chunks."""

    def __init__(self, behaviour: Callable[[int], Any] | Any = "ok", retry_after: float | None = None) -> None:
        self.behaviour = behaviour if callable(behaviour) else (lambda n, b=behaviour: b)
        self.retry_after = retry_after
        self.calls: list[float] = []
        self.in_flight = 0
        self.max_seen = 0

    async def _before(self) -> Any:
        loop = asyncio.get_running_loop()
        b = self.behaviour(len(self.calls))
        self.calls.append(loop.time())
        if b == "hang":
            await asyncio.sleep(3600)
        if isinstance(b, float):
            await asyncio.sleep(b)
        if isinstance(b, int):
            raise provider_error_from_status(b, f"scripted {b}", retry_after=self.retry_after)
        if b == "context":
            raise provider_error_from_status(400, "maximum context length exceeded")
        return b

    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        self.in_flight += 1
        self.max_seen = max(self.max_seen, self.in_flight)
        try:
            await self._before()
            return completion(f"from {target.name}", model=target.model)
        finally:
            self.in_flight -= 1

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        b = await self._before()
        base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": target.model}
        for i in range(4):
            if isinstance(b, tuple) and b[0] == "cut" and i >= b[1]:
                raise ProviderError("provider_error", "upstream stream broke")
            yield {**base, "choices": [{"index": 0, "delta": {"content": f"p{i} "}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    async def list_models(self) -> list[str]:
        await self._before()
        return ["m"]


def build(models: dict[str, Any], providers: dict[str, FakeProvider], **router_opts: Any) -> Router:
    cfg = {"providers": {name: {"type": "mock"} for name in providers}, "models": models}
    services = make_services(cfg)
    services.providers.update(providers)
    return Router(RouterConfig(**{"seed": 7, **router_opts}), services)


@pytest.fixture
def fake() -> type[FakeProvider]:
    return FakeProvider
