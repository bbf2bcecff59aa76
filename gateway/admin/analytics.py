"""Analytics over the usage rows: dashboard stats, overview with comparison, per-model, time series.

All organization-scoped (``project_id IN (projects of my org)``), optionally narrowed
to one of my projects with ``project_id``. Days and months are UTC.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..pricing import micros_to_usd
from ..store.usage import usage_filter
from .context import AdminContext, Principal, admin_route, json_response, read_json
from .usage import parse_time, public_summary, time_range

__all__ = ["add_routes"]

PERIODS = {"7d": 7 * 86400, "30d": 30 * 86400, "all": None}
SERIES_METRICS = ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "cost_saved_usd", "cache_hits",
                  "cache_hit_rate", "errors", "error_rate", "avg_latency_ms")
GROUP_BY = ("model", "provider", "project", "status")
MAX_POINTS = 5000
MAX_INTERVAL = 366 * 86400
_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _utc_day(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def _utc_month(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


async def _scope(ctx: AdminContext, me: Principal, project_id: str | None) -> dict[str, Any]:
    if project_id:
        if await ctx.store.projects.get(project_id, me.org_id) is None:
            raise GatewayError("not_found", "no such project")
        return {"project_id": project_id}
    return {"org_id": me.org_id}


@admin_route()
async def dashboard_stats(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    period = request.query.get("period", "7d")
    if period not in PERIODS:
        raise GatewayError("invalid_request", "period must be one of 7d, 30d, all", param="period")
    scope = await _scope(ctx, me, request.query.get("project_id"))
    now = time.time()
    span = PERIODS[period]
    since = now - span if span else None
    repo = ctx.store.usage
    total = public_summary(await repo.summary(usage_filter(**scope, since=since)))
    today = await repo.summary(usage_filter(**scope, since=_utc_day(now)))
    month = await repo.summary(usage_filter(**scope, since=_utc_month(now)))
    models = await repo.by_model(usage_filter(**scope, since=since), limit=5)
    daily_since = since if since is not None else now - 90 * 86400  # "all" charts the last 90 days
    daily = await repo.series(usage_filter(**scope, since=_utc_day(daily_since)), interval_s=86400)
    return json_response({
        "period": period,
        "requests_total": total["requests"],
        "requests_today": today.get("requests", 0),
        "cache_hit_rate": total["cache_hit_rate"],
        "error_rate": total["error_rate"],
        "cost_this_month_usd": micros_to_usd(int(month.get("cost_micros") or 0)),
        "cost_this_month_micros": int(month.get("cost_micros") or 0),
        "cost_usd": total["cost_usd"],
        "cost_saved_usd": total["cost_saved_usd"],
        "tokens_saved": total["tokens_saved"],
        "avg_latency_ms": total["avg_latency_ms"],
        "top_models": [{**m, "cost_usd": micros_to_usd(int(m["cost_micros"] or 0))} for m in models],
        "daily": [{"date": datetime.fromtimestamp(p["bucket"], tz=timezone.utc).date().isoformat(), "requests": p["requests"],
                   "cost_usd": micros_to_usd(int(p["cost_micros"] or 0)), "cache_hits": p["cache_hits"], "errors": p["errors"]}
                  for p in daily],
    })


def _pct_change(cur: float, prev: float) -> float | None:
    return None if not prev else round((cur - prev) / prev * 100, 2)


@admin_route()
async def overview(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    since, until = time_range(request)
    now = time.time()
    until = until if until is not None else now
    since = since if since is not None else until - 7 * 86400
    scope = await _scope(ctx, me, request.query.get("project_id"))
    repo = ctx.store.usage
    cur = public_summary(await repo.summary(usage_filter(**scope, since=since, until=until)))
    prev = public_summary(await repo.summary(usage_filter(**scope, since=since - (until - since), until=since)))
    keys = ("requests", "cost_micros", "prompt_tokens", "completion_tokens", "cache_hit_rate", "error_rate", "avg_latency_ms")
    change = {k: _pct_change(float(cur.get(k) or 0), float(prev.get(k) or 0)) for k in keys}
    return json_response({"from": since, "to": until, "current": cur, "previous": prev, "change_pct": change})


@admin_route()
async def models(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    since, until = time_range(request)
    scope = await _scope(ctx, me, request.query.get("project_id"))
    rows = await ctx.store.usage.by_model(usage_filter(**scope, since=since, until=until), limit=100)
    return json_response({"data": [{**r, "cost_usd": micros_to_usd(int(r["cost_micros"] or 0))} for r in rows]})


def _interval(value: Any) -> int:
    seconds = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value[:-1].isdigit() and value[-1:] in _INTERVALS and len(value) <= 12:
        seconds = int(value[:-1]) * _INTERVALS[value[-1]]
    if seconds is None or not 0 < seconds <= MAX_INTERVAL:  # a huge one overflowed SQLite's integers (was a 500)
        raise GatewayError("invalid_request", "`interval` must be seconds or like 5m, 1h, 1d (at most 366d)", param="interval")
    return seconds


def _point(row: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    n = int(row["requests"] or 0)
    values = {
        "requests": n, "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
        "cost_usd": float(int(row["cost_micros"] or 0)) / 1e6, "cost_saved_usd": float(int(row["cost_saved_micros"] or 0)) / 1e6,
        "cache_hits": row["cache_hits"], "cache_hit_rate": (row["cache_hits"] or 0) / n if n else 0.0,
        "errors": row["errors"], "error_rate": (row["errors"] or 0) / n if n else 0.0, "avg_latency_ms": row["avg_latency_ms"],
    }
    return {"t": row["bucket"], **{k: values[k] for k in wanted}}


@admin_route()
async def metrics_query(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    data = await read_json(request)
    wanted = data.get("metrics") or ["requests"]
    if not isinstance(wanted, list) or not all(m in SERIES_METRICS for m in wanted):
        raise GatewayError("invalid_request", f"`metrics` must be a list of {', '.join(SERIES_METRICS)}", param="metrics")
    group_by = data.get("group_by")
    if group_by is not None and group_by not in GROUP_BY:
        raise GatewayError("invalid_request", f"`group_by` must be one of {', '.join(GROUP_BY)}", param="group_by")
    interval = _interval(data.get("interval", "1h"))
    now = time.time()
    since = parse_time(str(data.get("from", "")), param="from", now=now)
    until = parse_time(str(data.get("to", "")), param="to", now=now)
    # "" is unset, as in a query string (was an AssertionError: 500): the defaults are now-24h and now
    since = now - 86400 if since is None else since
    until = now if until is None else until
    if since > until:
        raise GatewayError("invalid_request", "`from` must not be after `to`", param="from")
    if (until - since) / interval > MAX_POINTS:
        raise GatewayError("invalid_request", f"at most {MAX_POINTS} points per series: widen `interval`", param="interval")
    scope = await _scope(ctx, me, data.get("project_id") if isinstance(data.get("project_id"), str) else None)
    rows = await ctx.store.usage.series(usage_filter(**scope, since=since, until=until), interval_s=interval, group_by=group_by)
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault("all" if group_by is None else str(row["grp"]), []).append(_point(row, wanted))
    return json_response({"from": since, "to": until, "interval": interval, "group_by": group_by,
                          "series": [{"key": k, "points": v} for k, v in series.items()]})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/dashboard/stats", dashboard_stats)
    r.add_get("/api/analytics/overview", overview)
    r.add_get("/api/analytics/models", models)
    r.add_post("/api/metrics/query", metrics_query)


def _describe() -> None:
    from ..http.openapi import op, register_paths

    obj = {"type": "object", "additionalProperties": True}
    read = ("400", "401", "404")
    s = {"type": "string"}
    span = {"from": s, "to": s, "project_id": s}
    query = {"type": "object", "additionalProperties": True, "properties": {
        "metrics": {"type": "array", "items": {"enum": list(SERIES_METRICS)}}, "group_by": {"enum": list(GROUP_BY)},
        "interval": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+[smhdw]$"}]},
        "from": s, "to": s, "project_id": s}}
    register_paths({
        "/api/dashboard/stats": {"get": op("Dashboard numbers for period=7d|30d|all", "analytics", out=obj, errors=read,
                                           squery={"period": {"enum": list(PERIODS)}, "project_id": s})},
        "/api/analytics/overview": {"get": op("Totals for from..to with the previous period for comparison", "analytics",
                                              out=obj, errors=read, squery=span)},
        "/api/analytics/models": {"get": op("Requests, tokens, cost, errors per model", "analytics", out=obj, errors=read,
                                            squery=span)},
        "/api/metrics/query": {"post": op("Time series of chosen metrics with interval and group_by", "analytics",
                                          out=obj, body=query, errors=read)},
    })


_describe()
