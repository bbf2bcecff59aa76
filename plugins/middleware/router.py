"""The ``router`` middleware (terminal): alias → target, retries and fallbacks.

For each request it builds an attempt plan — the alias's targets ordered by the
strategy, then the targets of its ``fallbacks`` aliases — and tries them until
one answers, within ``max_attempts`` and the request deadline. A stream is
retried only until its first chunk: nothing is retried once a byte could have
reached the client.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from gateway.call import Call, Endpoint, Target
from gateway.config import ModelConfig
from gateway.errors import GatewayError, ProviderError
from gateway.pipeline import Handler
from gateway.plugin import Services
from gateway.reply import Reply


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    backoff_base_ms: float = field(default=25.0, metadata={"help": "jittered exponential back-off base"})
    backoff_cap_ms: float = 250.0
    max_retry_after: float = field(default=5.0, metadata={"help": "longest Retry-After honoured before falling back"})


async def _prepend(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


async def _empty() -> AsyncIterator[dict[str, Any]]:
    return
    yield  # pragma: no cover


class Router:
    Config = RouterConfig
    terminal = True

    def __init__(self, config: RouterConfig, services: Services) -> None:
        self.cfg = config
        self.services = services
        self.models = services.config.models
        self._rr = {alias: itertools.count() for alias in self.models}

    def _order(self, alias: str, mc: ModelConfig) -> list[Target]:
        targets = list(mc.targets)
        if len(targets) <= 1 or mc.strategy == "fallback":
            return targets
        if mc.strategy == "round_robin":
            start = next(self._rr[alias]) % len(targets)
            return targets[start:] + targets[:start]
        # weighted: draw an order without replacement, proportional to weight
        order: list[Target] = []
        pool = [t for t in targets if t.weight > 0]
        while pool:
            pick = random.choices(pool, weights=[t.weight for t in pool])[0]
            order.append(pick)
            pool.remove(pick)
        return order

    def plan(self, alias: str) -> list[Target]:
        mc = self.models[alias]
        out = self._order(alias, mc)
        for fb in mc.fallbacks:
            if fb in self.models and fb != alias:
                out.extend(self._order(fb, self.models[fb]))
        return out

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        alias = call.model
        mc = self.models.get(alias)
        if mc is None:
            raise GatewayError("invalid_model", f"The model `{alias}` does not exist", param="model")
        deadline = time.monotonic() + (mc.deadline or self.services.config.server.request_timeout)
        last: ProviderError | None = None
        attempts = 0
        for target in self.plan(alias):
            if attempts >= mc.max_attempts:
                break
            provider = self.services.providers.get(target.provider)
            if provider is None:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayError("provider_timeout", "request deadline exceeded")
            if attempts:
                await asyncio.sleep(self._backoff(attempts, last))
            attempts += 1
            call.facts.attempts = attempts
            call.facts.provider, call.facts.model_served = target.provider, target.model
            body = {**call.body, "model": target.model}
            started = time.perf_counter()
            try:
                reply = await asyncio.wait_for(self._send(provider, body, target, call), timeout=remaining)
            except asyncio.TimeoutError:
                last = ProviderError("provider_timeout", f"{target.name} exceeded the request deadline", retryable=False)
                break
            except ProviderError as err:
                last = err
                if not (err.retryable or err.context_window):
                    raise
                continue
            call.facts.upstream_ms = (time.perf_counter() - started) * 1000
            return reply
        if last is not None:
            raise last
        raise GatewayError("service_unavailable", f"no available target for model `{alias}`")

    def _backoff(self, attempt: int, last: ProviderError | None) -> float:
        if last is not None and last.retry_after is not None and last.retry_after <= self.cfg.max_retry_after:
            return last.retry_after
        cap = min(self.cfg.backoff_cap_ms, self.cfg.backoff_base_ms * (2 ** attempt - 1))
        return random.uniform(0, cap) / 1000

    async def _send(self, provider: Any, body: dict[str, Any], target: Target, call: Call) -> Reply:
        ep = call.endpoint
        if ep == Endpoint.EMBEDDINGS:
            return Reply.json(await provider.embeddings(body, target, call))
        stream = bool(body.get("stream"))
        if ep == Endpoint.CHAT:
            if not stream:
                return Reply.json(await provider.chat(body, target, call))
            agen = provider.chat_stream(body, target, call)
        else:
            if not stream:
                return Reply.json(await provider.completions(body, target, call))
            agen = provider.completions_stream(body, target, call)
        try:
            first = await agen.__anext__()  # errors before the first chunk are still retryable
        except StopAsyncIteration:
            return Reply.stream(_empty())
        return Reply.stream(_prepend(first, agen))
