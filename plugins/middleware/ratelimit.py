"""ratelimit: requests and tokens per window, per key, project, model and IP; monthly quotas.

Algorithm: a sliding-window LOG (not a counter approximation, not GCRA): a request is
admitted when, for every limit that applies, what was admitted in the last
``window_seconds`` plus this request stays within the limit. So no window of that
length, whatever its start, ever admits more than the limit; a client that sends twice
the limit sustained gets exactly the limit per window. All limits of one request are
decided together in ONE atomic backend call (one Lua script on Redis), all or nothing.

Sources, later ones win: ``plans`` (by ``project.plan``) or ``default`` → the
project's settings in the store (``rpm``/``tpm`` or ``limits: {rpm, tpm, monthly,
key_rpm}``). Unauthenticated calls (no project) are limited per client IP.

Tokens per minute: the prompt is estimated and charged on admission; the rest of the
real usage is charged when the response completes (so TPM can be exceeded by one
response's output, never admitted past it).

Responses carry ``X-RateLimit-Limit/Remaining/Reset`` (Reset: epoch seconds when
capacity frees) for the tightest request limit, plus ``-Tokens`` variants for TPM.
Over the limit: 429 ``rate_limit_exceeded`` with ``Retry-After``; monthly quota
spent: 402 ``quota_exceeded``. Backend down: ``fail_mode`` open (default: admit and
count in ``stats["fail_open"]``) or closed (503 ``service_unavailable``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway import Call, GatewayError, Handler, Reply, Services
from gateway.memo import ProjectMemo
from gateway.pricing import prompt_tokens
from gateway.reply import Outcome
from gateway.state import RateLimit as Limit
from gateway.state import StateUnavailable
from gateway.state.periods import period_of

log = logging.getLogger("watchllm.ratelimit")


@dataclass(frozen=True, kw_only=True)
class PlanLimits:
    rpm: int | None = field(default=None, metadata={"help": "requests per window per project"})
    tpm: int | None = field(default=None, metadata={"help": "tokens per window per project"})
    monthly: int | None = field(default=None, metadata={"help": "requests per calendar month (UTC) per project"})
    key_rpm: int | None = field(default=None, metadata={"help": "requests per window per API key"})


def _default_plans() -> dict[str, PlanLimits]:
    return {
        "free": PlanLimits(rpm=10, monthly=10_000),
        "starter": PlanLimits(rpm=60, monthly=100_000),
        "pro": PlanLimits(rpm=600, monthly=1_000_000),
        "agency": PlanLimits(rpm=6000, monthly=10_000_000),
    }


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    window_seconds: float = 60.0
    plans: dict[str, PlanLimits] = field(default_factory=_default_plans)
    default: PlanLimits = field(default_factory=PlanLimits, metadata={"help": "for plans not listed in `plans`"})
    model_rpm: dict[str, int] = field(default_factory=dict, metadata={"help": "per project and model alias"})
    ip_rpm: int | None = field(default=60, metadata={"help": "per client IP, for calls without a project"})
    fail_mode: Literal["open", "closed"] = "open"


class RateLimit:
    Config = RateLimitConfig

    def __init__(self, config: RateLimitConfig | None, services: Services) -> None:
        self.config = config or RateLimitConfig()
        self.services = services
        self.window_ms = int(self.config.window_seconds * 1000)
        self._limits: ProjectMemo[tuple[list[Limit], list[str]]] = ProjectMemo()
        self.stats: dict[str, int] = {"admitted": 0, "limited": 0, "quota": 0, "fail_open": 0, "fail_closed": 0}
        self._last_log = 0.0

    async def startup(self) -> None:
        if self.services.state is None:
            from gateway.state import MemoryState

            self.services.log.warning("ratelimit: no state backend configured; using in-process memory")
            self.services.state = MemoryState()

    # which limits apply -------------------------------------------------------
    def limits_for(self, call: Call, now_s: float) -> tuple[list[Limit], list[str]]:
        """The limits of this call and, in the same order, their kind ("req" | "tok" | "month").

        Cached per (project, key, model, UTC day) while the project's settings object is the
        same one (auth hands out a new one when they change); only the token limit's cost
        (this request's prompt tokens) is filled in per call."""
        project = call.project
        if project is None:
            return self._compute_limits(call, now_s)
        ck = (project.id, project.plan, call.key.id if call.key is not None else None, call.model, int(now_s // 86400))
        limits, kinds = self._limits.get(ck, project.settings, lambda: self._compute_limits(call, now_s))
        tok = kinds.index("tok") if "tok" in kinds else -1
        if tok >= 0:
            lim = limits[tok]
            limits = list(limits)
            limits[tok] = Limit(lim.key, lim.limit, lim.window_ms, max(1, prompt_tokens(call)))
        return limits, kinds

    def _compute_limits(self, call: Call, now_s: float) -> tuple[list[Limit], list[str]]:
        cfg, w = self.config, self.window_ms
        project = call.project
        if project is None:
            if cfg.ip_rpm is None:
                return [], []
            return [Limit(f"ip:{call.client_ip or 'unknown'}:rpm", cfg.ip_rpm, w)], ["req"]
        plan = cfg.plans.get(project.plan, cfg.default)
        rpm, tpm, monthly, key_rpm = plan.rpm, plan.tpm, plan.monthly, plan.key_rpm
        s = project.settings or {}
        pid = project.id
        rpm, tpm = _count_setting(s, "rpm", rpm, pid), _count_setting(s, "tpm", tpm, pid)
        over = s.get("limits")
        if isinstance(over, dict):
            rpm, tpm = _count_setting(over, "rpm", rpm, pid), _count_setting(over, "tpm", tpm, pid)
            monthly, key_rpm = _count_setting(over, "monthly", monthly, pid), _count_setting(over, "key_rpm", key_rpm, pid)
        limits: list[Limit] = []
        kinds: list[str] = []
        if rpm is not None:
            limits.append(Limit(f"p:{pid}:rpm", int(rpm), w))
            kinds.append("req")
        if key_rpm is not None and call.key is not None:
            limits.append(Limit(f"k:{call.key.id}:rpm", int(key_rpm), w))
            kinds.append("req")
        model_rpm = cfg.model_rpm.get(call.model)
        if model_rpm is not None:
            limits.append(Limit(f"p:{pid}:m:{call.model}:rpm", model_rpm, w))
            kinds.append("req")
        if tpm is not None:
            cost = max(1, prompt_tokens(call))
            limits.append(Limit(f"p:{pid}:tpm", int(tpm), w, cost))
            kinds.append("tok")
        if monthly is not None:
            month = period_of("month", now_s)
            limits.append(Limit(f"p:{pid}:q:{month.id}", int(monthly), 0, 1, month.end_ms))
            kinds.append("month")
        return limits, kinds

    # the middleware ---------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        now_s = time.time()
        limits, kinds = self.limits_for(call, now_s)
        if not limits:
            return await call_next(call)
        try:
            d = await self.services.state.rate_admit(call.id, limits)
        except StateUnavailable as exc:
            return await self._unavailable(call, call_next, exc)
        self._stamp(call, limits, kinds, d.remaining, d.reset_ms)
        if not d.admitted:
            self._refuse(call, limits[d.failing], kinds[d.failing], d.reset_ms[d.failing], d.now_ms)
        self.stats["admitted"] += 1
        reply = await call_next(call)
        for lim, kind in zip(limits, kinds):
            if kind == "tok":
                reply.on_complete(self._tokens_settler(call, lim))
        return reply

    def _stamp(self, call: Call, limits: list[Limit], kinds: list[str], remaining: list[int], resets: list[int]) -> None:
        h = call.reply_headers
        best = tok = -1
        for i, kind in enumerate(kinds):
            if kind == "tok":
                tok = i
            elif best < 0 or remaining[i] < remaining[best]:
                best = i
        if best >= 0:
            h["X-RateLimit-Limit"] = str(limits[best].limit)
            h["X-RateLimit-Remaining"] = str(remaining[best])
            h["X-RateLimit-Reset"] = str(-(-resets[best] // 1000))
        if tok >= 0:
            h["X-RateLimit-Limit-Tokens"] = str(limits[tok].limit)
            h["X-RateLimit-Remaining-Tokens"] = str(remaining[tok])
            h["X-RateLimit-Reset-Tokens"] = str(-(-resets[tok] // 1000))

    def _refuse(self, call: Call, lim: Limit, kind: str, reset_ms: int, now_ms: int) -> None:
        plan = call.project.plan if call.project else None
        retry_after = max(1, -(-(reset_ms - now_ms) // 1000))
        details = {"plan": plan, "limit": lim.limit, "reset_at": -(-reset_ms // 1000),
                   "window": "month" if kind == "month" else f"{self.config.window_seconds:g}s",
                   "unit": "tokens" if kind == "tok" else "requests"}
        if kind == "month":
            self.stats["quota"] += 1
            raise GatewayError("quota_exceeded", f"monthly request quota of {lim.limit} used up", details=details,
                               headers={"Retry-After": str(retry_after)})
        self.stats["limited"] += 1
        # the 429 must carry the refusing limit's headers, not the tightest other one
        call.reply_headers["Retry-After"] = str(retry_after)
        if kind == "req":
            call.reply_headers.update({"X-RateLimit-Limit": str(lim.limit), "X-RateLimit-Remaining": "0",
                                       "X-RateLimit-Reset": str(details["reset_at"])})
        raise GatewayError("rate_limit_exceeded",
                           f"rate limit of {lim.limit} {details['unit']} per {details['window']} exceeded",
                           details=details, headers={"Retry-After": str(retry_after)})

    async def _unavailable(self, call: Call, call_next: Handler, exc: StateUnavailable) -> Reply:
        mode = self.config.fail_mode
        self.stats[f"fail_{mode}"] += 1
        now = time.monotonic()
        if now - self._last_log > 5.0:
            self._last_log = now
            log.warning("ratelimit: state backend unavailable (%s); failing %s (fail_open=%d fail_closed=%d)",
                        exc, mode, self.stats["fail_open"], self.stats["fail_closed"])
        if mode == "closed":
            raise GatewayError("service_unavailable", "rate limiter unavailable, try again shortly",
                               headers={"Retry-After": "1"})
        return await call_next(call)

    def _tokens_settler(self, call: Call, lim: Limit) -> Any:
        async def settle(outcome: Outcome) -> None:
            usage = outcome.usage
            if usage is None:
                return
            extra = (usage.total_tokens or usage.prompt_tokens + usage.completion_tokens) - lim.cost
            if extra <= 0:
                return
            try:  # a charge, not a decision
                await self.services.state.rate_charge(call.id + ":u", lim.key, lim.window_ms, extra)
            except StateUnavailable:
                self.stats["fail_open"] += 1

        return settle


def _count_setting(settings: dict[str, Any], name: str, fallback: Any, project_id: str) -> Any:
    """A limit from a project's settings; one that is not a whole number >= 0 (stored before the
    admin API checked them) is ignored with a warning, never a 500 on every call."""
    if name not in settings:
        return fallback
    value = settings[name]
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and value == int(value)):
        return value
    log.warning("ratelimit: project %s has an invalid %s setting (%r); using the plan's value", project_id, name, type(value).__name__)
    return fallback
