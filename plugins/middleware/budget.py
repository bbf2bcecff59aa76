"""budget: daily and monthly USD budgets per project, team and API key.

Before the upstream call the middleware RESERVES an upper-bound estimate (prompt
tokens + ``max_tokens`` — or ``default_max_tokens`` — at the highest price among the
alias's targets) in every budget that applies, in one atomic backend call: admitted
only if ``spent + reserved + estimate <= limit`` for all of them. After the response
(JSON or stream, also on error and client disconnect: ``Reply.on_complete``) it
SETTLES: the hold is dropped and the real cost (``outcome.cost_micros``) added.
An exception below releases the hold. A hold whose replica died expires after
``reservation_ttl`` seconds. So concurrent requests cannot overspend; the only
possible overshoot is a response costing more than its own estimate.

Limits, later ones win: config defaults (``project``, ``team``, ``key``, ``teams``)
→ the project's settings (``budget_micros`` + ``budget_period``, or ``budget:
{daily_usd, monthly_usd, key_daily_usd, key_monthly_usd}``). Money is integer
micro-USD throughout; USD only in config and in error details.

Lost counters: a scope the backend has never seen (new period, or a Redis that lost
its data) is "unseeded"; it is seeded from ``spend_source`` (default: the usage
table of the store) before anything is admitted against it, so a Redis restart does
not reset a tenant's spend. ``rebuild()`` forces a scope to the store's figure.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal

from gateway import Call, GatewayError, Handler, Reply, Services
from gateway.memo import ProjectMemo
from gateway.pricing import micros_to_usd, prompt_tokens, usd_to_micros
from gateway.reply import Outcome
from gateway.state import BudgetScope, StateUnavailable
from gateway.state.periods import Period, period_of

log = logging.getLogger("watchllm.budget")

GRACE_MS = 40 * 86_400_000  # counters outlive their period so the admin API can show last month
SpendSource = Callable[[str, str, Period], Awaitable[int]]  # (scope kind, scope id, period) -> micro-USD


@dataclass(frozen=True, kw_only=True)
class BudgetLimits:
    daily_usd: float | str | None = None
    monthly_usd: float | str | None = None


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    project: BudgetLimits = field(default_factory=BudgetLimits, metadata={"help": "default for every project"})
    key: BudgetLimits = field(default_factory=BudgetLimits, metadata={"help": "default for every API key"})
    team: BudgetLimits = field(default_factory=BudgetLimits, metadata={"help": "default for every team"})
    teams: dict[str, BudgetLimits] = field(default_factory=dict, metadata={"help": "per team id"})
    default_max_tokens: int = field(default=4096, metadata={"help": "output reserved when a request sets no max_tokens"})
    max_reserve_tokens: int | None = field(default=None, metadata={"help": "cap on the output tokens reserved"})
    reservation_ttl: float = field(default=900.0, metadata={"help": "seconds before an unsettled hold expires"})
    fail_mode: Literal["open", "closed"] = "closed"


@dataclass(slots=True)
class _Applied:
    scopes: list[BudgetScope]
    labels: list[tuple[str, str, Period]]  # (kind, id, period) per scope


class Budget:
    Config = BudgetConfig

    def __init__(self, config: BudgetConfig | None, services: Services) -> None:
        self.config = config or BudgetConfig()
        self.services = services
        self.ttl_ms = int(self.config.reservation_ttl * 1000)
        self.spend_source: SpendSource | None = self._store_spend if services.store is not None else None
        self.stats: dict[str, int] = {"reserved": 0, "exceeded": 0, "settled": 0, "released": 0,
                                      "fail_open": 0, "fail_closed": 0, "settle_failed": 0, "seeded": 0}
        self._last_log = 0.0
        self._applied: ProjectMemo[_Applied] = ProjectMemo()
        c = self.config
        self._defaults = (_micros(c.project.daily_usd), _micros(c.project.monthly_usd),
                          _micros(c.key.daily_usd), _micros(c.key.monthly_usd))
        self._teams = {t: (_micros(v.daily_usd), _micros(v.monthly_usd)) for t, v in c.teams.items()}
        self._team = (_micros(c.team.daily_usd), _micros(c.team.monthly_usd))

    async def startup(self) -> None:
        if self.services.state is None:
            from gateway.state import MemoryState

            self.services.log.warning("budget: no state backend configured; using in-process memory")
            self.services.state = MemoryState()
        if self.spend_source is None and self.services.store is not None:
            self.spend_source = self._store_spend

    # which budgets apply ----------------------------------------------------
    def scopes_for(self, call: Call, now_s: float) -> _Applied:
        """The budgets of this call; cached per (project, key, UTC day) while the project's
        settings object is the same one (auth hands out a new one when they change)."""
        project = call.project
        if project is None:
            return _Applied([], [])
        ck = (project.id, project.team_id, call.key.id if call.key is not None else None, int(now_s // 86400))
        return self._applied.get(ck, project.settings, lambda: self._compute_scopes(call, now_s))

    def _compute_scopes(self, call: Call, now_s: float) -> _Applied:
        out = _Applied([], [])
        project = call.project
        assert project is not None
        s = project.settings or {}
        p_day, p_month, k_day, k_month = self._defaults
        bm = s.get("budget_micros")
        if isinstance(bm, (int, float)) and not isinstance(bm, bool) and bm >= 0:
            if s.get("budget_period", "month") == "day":
                p_day = int(bm)
            else:
                p_month = int(bm)
        elif bm is not None:
            log.warning("budget: project %s has an invalid budget_micros setting; using the defaults", project.id)
        b = s.get("budget")
        if isinstance(b, dict):
            p_day = _setting_micros(b.get("daily_usd"), p_day)
            p_month = _setting_micros(b.get("monthly_usd"), p_month)
            k_day = _setting_micros(b.get("key_daily_usd"), k_day)
            k_month = _setting_micros(b.get("key_monthly_usd"), k_month)
        self._add(out, "project", project.id, p_day, p_month, now_s)
        if project.team_id:
            t_day, t_month = self._teams.get(project.team_id, self._team)
            self._add(out, "team", project.team_id, t_day, t_month, now_s)
        if call.key is not None:
            self._add(out, "key", call.key.id, k_day, k_month, now_s)
        return out

    @staticmethod
    def _add(out: _Applied, kind: str, ident: str, day: int | None, month: int | None, now_s: float) -> None:
        for name, limit in (("day", day), ("month", month)):
            if limit is None:
                continue
            p = period_of(name, now_s)
            out.scopes.append(BudgetScope(f"{kind[0]}:{ident}:{p.id}", limit, p.end_ms + GRACE_MS))
            out.labels.append((kind, ident, p))

    def estimate_micros(self, call: Call) -> int:
        body = call.body
        max_out = body.get("max_completion_tokens") or body.get("max_tokens") or self.config.default_max_tokens
        if self.config.max_reserve_tokens is not None:
            max_out = min(int(max_out), self.config.max_reserve_tokens)
        messages = body.get("messages")
        prompt = prompt_tokens(call) + (4 * len(messages) if isinstance(messages, list) else 0)
        alias = self.services.config.models.get(call.model) if self.services.config else None
        models = [t.model for t in alias.targets] if alias is not None else [call.model]
        return self.services.pricing.max_price_micros(models, prompt, int(max_out))

    # the middleware ---------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        applied = self.scopes_for(call, time.time())
        if not applied.scopes:
            return await call_next(call)
        amount = self.estimate_micros(call)
        state = self.services.state
        reserved = True
        try:
            r = await state.budget_reserve(call.id, amount, applied.scopes, self.ttl_ms)
            if r.status == "unseeded":
                await self._seed(applied, r.failing)
                r = await state.budget_reserve(call.id, amount, applied.scopes, self.ttl_ms)
                for _ in applied.scopes:  # several scopes new at once (a new day): seed each
                    if r.status != "unseeded":
                        break
                    await self._seed(applied, r.failing)
                    r = await state.budget_reserve(call.id, amount, applied.scopes, self.ttl_ms)
                if r.status == "unseeded":
                    raise StateUnavailable("budget scopes could not be seeded")
        except StateUnavailable as exc:
            self._unavailable(exc)  # raises when failing closed
            reserved = False
        else:
            if r.status == "over":
                self.stats["exceeded"] += 1
                kind, ident, p = applied.labels[r.failing]
                scope = applied.scopes[r.failing]
                raise GatewayError(
                    "budget_exceeded", f"{kind} {p.name}ly budget of ${micros_to_usd(scope.limit)} reached",
                    details={"budget": micros_to_usd(scope.limit), "spent": micros_to_usd(r.spent),
                             "reserved": micros_to_usd(r.reserved), "period": p.name, "scope": kind,
                             "reset_at": p.end_ms // 1000},
                )
            self.stats["reserved"] += 1
        try:
            reply = await call_next(call)
        except BaseException:
            if reserved:
                await self._settle(call.id, 0, applied)
            raise
        reply.on_complete(self._settler(call.id, applied, reserved))
        return reply

    def _settler(self, rid: str, applied: _Applied, reserved: bool) -> Callable[[Outcome], Awaitable[None]]:
        async def settle(outcome: Outcome) -> None:
            if reserved or outcome.cost_micros > 0:
                await self._settle(rid, outcome.cost_micros, applied)

        return settle

    async def _settle(self, rid: str, actual: int, applied: _Applied) -> None:
        try:
            await self.services.state.budget_settle(rid, actual, applied.scopes)
            self.stats["settled" if actual else "released"] += 1
        except StateUnavailable as exc:
            # The hold expires by itself; the spend is in the usage store (rebuild source).
            self.stats["settle_failed"] += 1
            log.warning("budget: could not settle %s (%d micro-USD): %s", rid, actual, exc)

    async def _seed(self, applied: _Applied, i: int) -> None:
        kind, ident, p = applied.labels[i]
        spent = 0
        if self.spend_source is not None:
            try:
                spent = int(await self.spend_source(kind, ident, p))
            except Exception as exc:  # the store is down: refuse rather than start from 0
                log.warning("budget: cannot read %s %s spend for %s from the store: %s", kind, ident, p.id, exc)
                raise StateUnavailable(f"spend source: {exc}") from exc
        await self.services.state.budget_seed(applied.scopes[i], spent)
        self.stats["seeded"] += 1

    def _unavailable(self, exc: Exception) -> None:
        mode = self.config.fail_mode
        self.stats[f"fail_{mode}"] += 1
        now = time.monotonic()
        if now - self._last_log > 5.0:
            self._last_log = now
            log.warning("budget: state backend unavailable (%s); failing %s (fail_open=%d fail_closed=%d)",
                        exc, mode, self.stats["fail_open"], self.stats["fail_closed"])
        if mode == "closed":
            raise GatewayError("service_unavailable", "budget accounting unavailable, try again shortly",
                               headers={"Retry-After": "1"})

    # hooks for the admin API and the hardening work ------------------------------
    async def rebuild(self, project_id: str, spent_micros: int, *, period: str = "month", scope: str = "project",
                      now_s: float | None = None) -> int:
        """Force a scope's spend for the current period to the system of record's figure."""
        p = period_of(period, time.time() if now_s is None else now_s)
        s = BudgetScope(f"{scope[0]}:{project_id}:{p.id}", 0, p.end_ms + GRACE_MS)
        return await self.services.state.budget_seed(s, spent_micros, rebuild=True)

    async def spend(self, ident: str, *, period: str = "month", scope: str = "project",
                    now_s: float | None = None) -> dict[str, Any]:
        """Spend of one scope in the current period, for the admin API (USD strings + micros)."""
        p = period_of(period, time.time() if now_s is None else now_s)
        got = await self.services.state.budget_get(f"{scope[0]}:{ident}:{p.id}")
        return {"scope": scope, "id": ident, "period": period, "period_id": p.id,
                "spent_micros": got.spent, "reserved_micros": got.reserved, "spent_usd": micros_to_usd(got.spent),
                "reset_at": p.end_ms // 1000, "seeded": got.seeded}

    async def _store_spend(self, kind: str, ident: str, p: Period) -> int:
        """The system of record's spend of one scope in a period (seeds a counter Redis lost)."""
        return await self.services.store.usage.spend_between(kind, ident, p.start_ms / 1000, p.end_ms / 1000)


def _micros(usd: Any, default: int | None = None) -> int | None:
    return default if usd is None else usd_to_micros(usd)  # config values: a bad one fails start-up


def _setting_micros(usd: Any, default: int | None) -> int | None:
    """A project setting in USD → micro-USD; a value that is not a valid amount (stored before the
    admin API checked settings) keeps the default, with a warning, rather than failing every call."""
    if usd is None:
        return default
    try:
        return usd_to_micros(usd)
    except (ValueError, TypeError, ArithmeticError):
        log.warning("budget: ignoring an invalid budget amount of type %s", type(usd).__name__)
        return default
