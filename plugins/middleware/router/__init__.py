"""The ``router`` middleware (terminal): alias → target, with retries, fallbacks and breakers.

For each request the router walks an attempt plan: the alias's targets in the order
its strategy chooses (``strategies``), then the targets of its ``fallbacks`` aliases.
A target whose breaker is open (``breaker``) or that is at its ``max_in_flight`` /
``rpm`` is skipped. A retryable failure moves on to the next target at once; once
every target was tried, further rounds retry them with jittered back-off, within the
retry budget (``retry``), ``max_attempts`` and the request deadline. A context-window
error switches the plan to ``context_window_fallbacks``. A stream is retried only until
its first chunk: nothing is retried once a byte could have reached the client.

When every target of the plan is open the request fails fast with 503
``service_unavailable`` (``when_all_open: fail_fast``) or tries them anyway
(``fail_open``, Portkey's bypass). ``call.facts`` records the target that answered,
the attempt count and the targets tried; ``x-watchllm-provider`` and
``x-watchllm-attempts`` say the same to the client.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal

from gateway.call import Call, Endpoint, Target
from gateway.config import ModelConfig
from gateway.errors import GatewayError, ProviderError
from gateway.pipeline import Handler
from gateway.plugin import Services
from gateway.reply import Outcome, Reply

from .breaker import Breaker, BreakerSettings
from .retry import RetryBudget, RetryPolicy
from .strategies import Strategy, TargetState, make_strategy
from .timeout import within

__all__ = ["Router", "RouterConfig"]


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    timeout: float | None = field(default=None, metadata={"help": "per-try timeout (s) for targets and aliases that set none"})
    deadline: float | None = field(default=None, metadata={"help": "total seconds per request incl. retries (default: server.request_timeout)"})
    backoff_base_ms: float = field(default=25.0, metadata={"help": "jittered exponential back-off base"})
    backoff_cap_ms: float = 250.0
    retry_after: Literal["fallback", "honour"] = field(default="fallback", metadata={"help": "on Retry-After: cool the target and fall back, or wait and retry it"})
    max_retry_after: float = field(default=5.0, metadata={"help": "longest Retry-After honoured before falling back"})
    max_retry_wait: float = field(default=60.0, metadata={"help": "cap on the total Retry-After wait per request"})
    cool_on_429: bool = field(default=True, metadata={"help": "a 429 with Retry-After takes the target out for that long"})
    retry_budget_percent: float = field(default=20.0, metadata={"help": "same-target retries in flight as % of requests in flight (0: no budget)"})
    retry_budget_min: int = 3
    breaker_failures: int = field(default=5, metadata={"help": "consecutive failures that open a target's breaker (0: off)"})
    breaker_failure_rate: float = field(default=0.5, metadata={"help": "failure ratio over the window that opens it (0: off)"})
    breaker_window: float = 30.0
    breaker_min_requests: int = 10
    breaker_cooldown: float = field(default=5.0, metadata={"help": "seconds open before a half-open probe; doubles per re-open"})
    breaker_max_cooldown: float = 60.0
    when_all_open: Literal["fail_fast", "fail_open"] = "fail_fast"
    ewma_alpha: float = 0.3
    health_cache_seconds: float = field(default=5.0, metadata={"help": "GET /providers/health caches probes this long"})
    health_timeout: float = 5.0
    seed: int | None = field(default=None, metadata={"help": "seed the strategies' RNG (tests)"})

    def validate(self) -> None:
        if not 0 <= self.breaker_failure_rate <= 1:
            raise ValueError("breaker_failure_rate must be within [0, 1]")
        if self.backoff_base_ms < 0 or self.backoff_cap_ms < 0:
            raise ValueError("back-off values must be >= 0")


class _Route:
    """An alias compiled at start-up: its strategy and the aliases it falls back to."""

    __slots__ = ("alias", "mc", "strategy", "fallbacks", "cw_fallbacks")

    def __init__(self, alias: str, mc: ModelConfig, strategy: Strategy) -> None:
        self.alias, self.mc, self.strategy = alias, mc, strategy
        self.fallbacks: list[_Route] = []
        self.cw_fallbacks: list[_Route] = []


class _Unavailable(Exception):
    pass


class Router:
    Config = RouterConfig
    terminal = True

    def __init__(self, config: RouterConfig | None, services: Services) -> None:
        cfg = config or RouterConfig()
        self.cfg = cfg
        self.services = services
        self.rng = random.Random(cfg.seed)
        self.policy = RetryPolicy(cfg.backoff_base_ms / 1000, cfg.backoff_cap_ms / 1000, cfg.retry_after,
                                  cfg.max_retry_after, cfg.max_retry_wait)
        self.budget = RetryBudget(cfg.retry_budget_percent, cfg.retry_budget_min)
        self.breaker_settings = BreakerSettings(cfg.breaker_failures, cfg.breaker_failure_rate, cfg.breaker_window,
                                                cfg.breaker_min_requests, cfg.breaker_cooldown, cfg.breaker_max_cooldown)
        self.states: dict[str, TargetState] = {}
        self.routes: dict[str, _Route] = {}
        models = services.config.models
        for alias, mc in models.items():
            for t in mc.targets:
                self.state_of(t)
            self.routes[alias] = _Route(alias, mc, make_strategy(mc.strategy, self.states, self.rng))
        for alias, route in self.routes.items():
            route.fallbacks = [self.routes[a] for a in route.mc.fallbacks if a in self.routes and a != alias]
            route.cw_fallbacks = [self.routes[a] for a in route.mc.context_window_fallbacks if a in self.routes and a != alias]
        self.default_deadline = cfg.deadline or services.config.server.request_timeout
        self._health_cache: tuple[float, dict[str, Any]] | None = None
        self._health_task: asyncio.Task[dict[str, Any]] | None = None
        services.extras["router"] = self
        services.extras["router.circuits"] = self.circuit_states  # read by the metrics gauges at scrape time

    def circuit_states(self) -> dict[str, str]:
        """Breaker state per target (``provider/model`` → closed | half_open | open)."""
        return {name: st.breaker.state for name, st in self.states.items()}

    def state_of(self, target: Target) -> TargetState:
        st = self.states.get(target.name)
        if st is None:
            st = self.states[target.name] = TargetState(target.name, Breaker(self.breaker_settings))
        return st

    # planning ----------------------------------------------------------------------
    def plan(self, route: _Route) -> list[Target]:
        """The alias's targets in strategy order, then each fallback alias's; a target appears once."""
        out = route.strategy.order(route.mc.targets)
        if route.fallbacks:
            seen = {t.name for t in out}
            for fb in route.fallbacks:
                for t in fb.strategy.order(fb.mc.targets):
                    if t.name not in seen:
                        seen.add(t.name)
                        out.append(t)
        return out

    def _cw_plan(self, route: _Route) -> list[Target]:
        out: list[Target] = []
        for fb in route.cw_fallbacks:
            out.extend(self.plan(fb))
        return out

    # the middleware ----------------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        route = self.routes.get(call.model)
        if route is None:
            raise GatewayError("invalid_model", f"The model `{call.model}` does not exist", param="model")
        self.budget.active += 1
        try:
            return await self._route(call, route)
        finally:
            self.budget.active -= 1

    async def _route(self, call: Call, route: _Route) -> Reply:
        mc = route.mc
        clock = time.monotonic
        deadline = clock() + (mc.deadline or self.default_deadline)
        plan = self.plan(route)
        tried: list[str] = []
        call.facts.extra["route"] = tried
        attempts = 0
        waited = 0.0
        last: ProviderError | None = None
        ignore_breakers = False
        rounds = 0
        while attempts < mc.max_attempts:
            progressed = False
            open_ = 0
            for target in plan:
                if attempts >= mc.max_attempts:
                    break
                provider = self.services.providers.get(target.provider)
                if provider is None:
                    continue
                state = self.states.get(target.name) or self.state_of(target)
                if rounds and target.name not in tried:
                    continue  # later rounds retry only targets that failed retryably
                if not ignore_breakers and not state.breaker.allow():
                    open_ += 1
                    continue
                retry_slot = False
                if rounds:
                    if not self.budget.try_acquire():
                        state.breaker.abandon()
                        break
                    retry_slot = True
                try:
                    while True:  # repeats only to honour a Retry-After on the same target
                        remaining = deadline - clock()
                        if remaining <= 0:
                            state.breaker.abandon()
                            raise self._final(last, "provider_timeout", "request deadline exceeded")
                        if rounds:
                            pause = self.policy.backoff(rounds, self.rng)
                            if pause >= remaining:
                                state.breaker.abandon()
                                raise self._final(last, "provider_timeout", "request deadline exceeded")
                            await asyncio.sleep(pause)
                            remaining = deadline - clock()
                        per_try = target.timeout or mc.timeout or self.cfg.timeout
                        timeout = remaining if per_try is None or per_try > remaining else per_try
                        attempts += 1
                        tried.append(target.name)
                        facts = call.facts
                        facts.attempts, facts.provider, facts.model_served = attempts, target.provider, target.model
                        try:
                            reply = await self._attempt(call, target, state, provider, timeout, remaining)
                        except _Unavailable:
                            attempts -= 1
                            tried.pop()
                            state.breaker.abandon()
                            break
                        except ProviderError as err:
                            last = err
                            progressed = True
                            if err.context_window and route.cw_fallbacks:
                                return await self._context_fallback(call, route, deadline, attempts, tried)
                            if not err.retryable:
                                raise self._final(err)
                            if timeout < (per_try or math.inf) and err.code == "provider_timeout":
                                raise self._final(err)  # the deadline, not the per-try timeout, cut it
                            wait = self.policy.honour_wait(err, deadline - clock(), waited)
                            if wait is not None and attempts < mc.max_attempts:
                                waited += wait
                                await asyncio.sleep(wait)
                                state.breaker.allow()
                                continue
                            break
                        call.reply_headers["x-watchllm-attempts"] = str(attempts)
                        return reply
                finally:
                    if retry_slot:
                        self.budget.release()
            if not progressed:
                if attempts == 0 and open_ and not ignore_breakers and self.cfg.when_all_open == "fail_open":
                    ignore_breakers = True
                    continue
                break
            rounds += 1
        if last is not None:
            raise self._final(last)
        raise self._no_target(route, plan)

    async def _context_fallback(self, call: Call, route: _Route, deadline: float, attempts: int, tried: list[str]) -> Reply:
        """The prompt does not fit: try the larger models once each, in order, no retries."""
        last: ProviderError | None = None
        for target in self._cw_plan(route):
            provider = self.services.providers.get(target.provider)
            state = self.state_of(target)
            remaining = deadline - time.monotonic()
            if provider is None or remaining <= 0 or not state.breaker.allow():
                continue
            attempts += 1
            tried.append(target.name)
            call.facts.attempts, call.facts.provider, call.facts.model_served = attempts, target.provider, target.model
            per_try = target.timeout or self.cfg.timeout
            try:
                reply = await self._attempt(call, target, state, provider, min(per_try or remaining, remaining), remaining)
            except _Unavailable:
                continue
            except ProviderError as err:
                last = err
                continue
            call.reply_headers["x-watchllm-attempts"] = str(attempts)
            return reply
        raise self._final(last) if last else GatewayError("invalid_request", "the prompt exceeds every model's context window")

    def _final(self, err: ProviderError | None, code: str = "provider_error", message: str = "") -> GatewayError:
        if err is None:
            return GatewayError(code, message)
        if err.retry_after is not None and err.status == 429:
            err.headers.setdefault("Retry-After", str(max(1, math.ceil(err.retry_after))))
        return err

    def _no_target(self, route: _Route, plan: list[Target]) -> GatewayError:
        states = [self.states[t.name] for t in plan if t.name in self.states]
        waits = [s.breaker.retry_in() for s in states if s.breaker.state != "closed"]
        headers = {"Retry-After": str(max(1, math.ceil(min(waits))))} if waits else None
        return GatewayError(
            "service_unavailable",
            f"no target of model `{route.alias}` is available (circuit open or at capacity)",
            details={"targets": {s.name: s.breaker.state for s in states}},
            headers=headers,
        )

    # one attempt -------------------------------------------------------------------
    async def _attempt(self, call: Call, target: Target, state: TargetState, provider: Any,
                       timeout: float, remaining: float) -> Reply:
        lease = await self._acquire(call, target, state, remaining)
        state.in_flight += 1
        state.requests += 1
        breaker = state.breaker
        body = {**call.body, "model": target.model}
        started = time.perf_counter()
        handed_off = False
        try:
            try:
                with within(timeout):
                    reply = await self._send(provider, body, target, call)
            except TimeoutError:
                state.failures += 1
                state.observe_latency(timeout * 1000, self.cfg.ewma_alpha)
                breaker.failure("timeout")
                raise ProviderError("provider_timeout", f"{target.name} did not answer within {timeout:.3g}s",
                                    retryable=True) from None
            except ProviderError as err:
                self._judge(err, breaker, state)
                raise
            except asyncio.CancelledError:
                breaker.abandon()
                raise
            except GatewayError:
                breaker.abandon()
                raise
            except Exception as exc:  # a provider bug: count it against the target, keep it retryable
                state.failures += 1
                breaker.failure(type(exc).__name__)
                self.services.log.exception("provider %s failed", target.provider)
                raise ProviderError("provider_error", f"{target.provider} failed: {type(exc).__name__}", retryable=True) from None
            ms = (time.perf_counter() - started) * 1000
            call.facts.upstream_ms = ms
            state.observe_latency(ms, self.cfg.ewma_alpha)
            breaker.success()
            if reply.chunks is not None:
                reply.on_complete(self._stream_done(call, target, state, lease))
                handed_off = True
            return reply
        finally:
            if not handed_off:
                state.in_flight -= 1
                if lease is not None:
                    await self._release(target, lease)

    def _judge(self, err: ProviderError, breaker: Breaker, state: TargetState) -> None:
        """How an upstream error counts against the target."""
        if err.upstream_status == 429 or err.code == "rate_limit_exceeded":
            ra = err.retry_after
            if self.cfg.cool_on_429 and ra and (self.cfg.retry_after == "fallback" or ra > self.cfg.max_retry_after):
                breaker.cool(ra, "rate_limited")
            else:
                breaker.abandon()
        elif err.retryable:
            state.failures += 1
            breaker.failure(err.code)
        else:
            breaker.success()  # the upstream answered; the request was at fault

    def _stream_done(self, call: Call, target: Target, state: TargetState, lease: str | None) -> Any:
        async def done(outcome: Outcome) -> None:
            state.in_flight -= 1
            if outcome.ended == "upstream_error":
                state.failures += 1
                state.breaker.failure("stream_broke")
            if lease is not None:
                await self._release(target, lease)
        return done

    # capacity: max_in_flight and rpm per target ------------------------------------------
    async def _acquire(self, call: Call, target: Target, state: TargetState, remaining: float) -> str | None:
        """Reserve a slot on a target with ``max_in_flight``/``rpm``; raise ``_Unavailable`` when full.

        Uses the shared state backend (``services.state``) so the limits hold across
        replicas; without one, or while it is down, counts in this process.
        """
        limit, rpm = target.max_in_flight, target.rpm
        if limit is None and rpm is None:
            return None
        st = self.services.state
        if st is not None:
            try:
                from gateway.state import RateLimit

                if rpm is not None:
                    dec = await st.rate_admit(f"{call.id}:{target.name}:{len(call.facts.extra.get('route', ()))}",
                                              [RateLimit(key=f"router:rpm:{target.name}", limit=rpm, window_ms=60_000)])
                    if not dec.admitted:
                        raise _Unavailable
                if limit is not None:
                    lease = f"{call.id}:{time.monotonic_ns()}"
                    ok, _ = await st.inflight_acquire(f"router:inflight:{target.name}", limit, lease, int(remaining * 1000) + 5_000)
                    if not ok:
                        raise _Unavailable
                    return lease
                return None
            except _Unavailable:
                raise
            except Exception:  # StateUnavailable or a backend bug: fall back to local counting
                pass
        if limit is not None and state.in_flight >= limit:
            raise _Unavailable
        if rpm is not None:
            minute = int(time.monotonic() // 60)
            w = state.rpm_window
            if w[0] != minute:
                w[0], w[1] = minute, 0
            if w[1] >= rpm:
                raise _Unavailable
            w[1] += 1
        return None

    async def _release(self, target: Target, lease: str) -> None:
        st = self.services.state
        if st is None:
            return
        try:
            await st.inflight_release(f"router:inflight:{target.name}", lease)
        except Exception:
            pass  # the lease expires with its TTL

    # provider dispatch ----------------------------------------------------------------
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
        except BaseException:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except BaseException:
                    pass
            raise
        return Reply.stream(_prepend(first, agen))

    # views for GET /v1/providers and /providers/health ---------------------------------
    def providers_view(self) -> dict[str, Any]:
        from .health import providers_view

        return providers_view(self)

    async def providers_health(self) -> dict[str, Any]:
        from .health import providers_health

        return await providers_health(self)


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
