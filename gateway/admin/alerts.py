"""Alerts, alert events and webhooks over the admin API; starts the evaluator and the dispatcher.

Routes (JWT, organization-scoped; writes need the admin role; another org's id is 404)::

    POST/GET /api/alerts              GET/PUT/DELETE /api/alerts/{alert_id}
    GET /api/alerts/events            (?alert_id=, limit, offset)
    POST/GET /api/webhooks            GET/DELETE /api/webhooks/{webhook_id}
    GET /api/webhooks/{webhook_id}/deliveries

The webhook secret is returned once, by the POST. The evaluator (gateway/alerts.py) and
the delivery dispatcher (gateway/webhooks.py) start with the app (``on_startup``, after
the store is open) and stop on ``on_shutdown`` (before the store closes).
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..alerts import AlertEvaluator
from ..errors import GatewayError
from ..store.alerts import ALERT_TYPES
from ..store.base import new_id
from ..webhooks import DispatchSettings, Dispatcher, WebhookTargetError, check_webhook_url, new_secret, resolve_target, seal_secret
from .context import ADMIN, AdminContext, Principal, admin_route, field, json_response, page, paged, read_json

__all__ = ["add_routes"]

log = logging.getLogger("watchllm.admin")
EVENT_TYPES = ("alert.fired", "alert.resolved", "*")
MAX_WINDOW_S = 31 * 86400
MAX_URL = 2048
RUNNING: web.AppKey[dict[str, Any]] = web.AppKey("watchllm_alerts_running", dict)


def public_alert(a: dict[str, Any]) -> dict[str, Any]:
    return {"id": a["id"], "name": a["name"], "type": a["metric"], "project_id": a["project_id"], "threshold": a["threshold"],
            "window_s": a["window_s"], "enabled": a["enabled"], "settings": a["settings"], "state": a.get("state", "ok"),
            "last_value": a.get("last_value"), "last_evaluated_at": a.get("last_evaluated_at"),
            "last_fired_at": a.get("last_fired_at"), "created_at": a["created_at"], "updated_at": a.get("updated_at")}


def _number(data: dict[str, Any], name: str, *, required: bool) -> float | None:
    if data.get(name) is None:
        if required:
            raise GatewayError("invalid_request", f"`{name}` is required", param=name)
        return None
    v = data[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v or v == float("inf"):
        raise GatewayError("invalid_request", f"`{name}` must be a non-negative number", param=name)
    return float(v)


async def _project(ctx: AdminContext, me: Principal, data: dict[str, Any]) -> str | None:
    pid = field(data, "project_id", str, required=False)
    if pid is not None and await ctx.store.projects.get(pid, me.org_id) is None:
        raise GatewayError("not_found", "no such project", param="project_id")
    return pid


def _alert_fields(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not partial or "name" in data:
        name = field(data, "name", str)
        if len(name) > 200:
            raise GatewayError("invalid_request", "`name` is at most 200 characters", param="name")
        out["name"] = name.strip()
    if not partial or "type" in data:
        kind = field(data, "type", str)
        kind = "budget" if kind == "quota" else kind
        if kind not in ALERT_TYPES:
            raise GatewayError("invalid_request", f"`type` must be one of {', '.join(ALERT_TYPES)}", param="type")
        out["metric"] = kind
    if not partial or "threshold" in data:
        out["threshold"] = _number(data, "threshold", required=True)
    if "window_s" in data or not partial:
        w = field(data, "window_s", int, required=False, default=300)
        if not 1 <= w <= MAX_WINDOW_S:
            raise GatewayError("invalid_request", f"`window_s` must be 1..{MAX_WINDOW_S}", param="window_s")
        out["window_s"] = w
    if "enabled" in data:
        out["enabled"] = field(data, "enabled", bool, required=False, default=True)
    if "settings" in data:
        s = field(data, "settings", dict, required=False, default={})
        unknown = set(s) - {"stat", "min_requests"}
        if unknown:
            raise GatewayError("invalid_request", f"unknown settings: {', '.join(sorted(unknown))}", param="settings")
        if s.get("stat", "avg") not in ("avg", "p95"):
            raise GatewayError("invalid_request", "settings.stat must be avg or p95", param="settings.stat")
        mr = s.get("min_requests", 1)
        if isinstance(mr, bool) or not isinstance(mr, int) or mr < 1:
            raise GatewayError("invalid_request", "settings.min_requests must be an integer >= 1", param="settings.min_requests")
        out["settings"] = s
    return out


# alerts ---------------------------------------------------------------------------
@admin_route(write=True)
async def create_alert(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    data = await read_json(request)
    fields = _alert_fields(data, partial=False)
    pid = await _project(ctx, me, data)
    if fields["metric"] == "budget" and pid is None:
        raise GatewayError("invalid_request", "budget alerts need `project_id`", param="project_id")
    alert = await ctx.store.alerts.create(org_id=me.org_id, project_id=pid, **fields)
    return json_response(public_alert(alert), 201)


@admin_route()
async def list_alerts(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    rows, total = await ctx.store.alerts.list(me.org_id, limit=limit, offset=offset)
    return paged([public_alert(a) for a in rows], total, limit, offset)


async def _alert(ctx: AdminContext, me: Principal, alert_id: str) -> dict[str, Any]:
    alert = await ctx.store.alerts.get(alert_id, me.org_id)
    if alert is None:
        raise GatewayError("not_found", "no such alert")
    return alert


@admin_route()
async def get_alert(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    return json_response(public_alert(await _alert(ctx, me, request.match_info["alert_id"])))


@admin_route(write=True)
async def update_alert(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    current = await _alert(ctx, me, request.match_info["alert_id"])
    data = await read_json(request)
    fields = _alert_fields(data, partial=True)
    if "project_id" in data:
        fields["project_id"] = await _project(ctx, me, data)
    if fields.get("metric", current["metric"]) == "budget" and fields.get("project_id", current["project_id"]) is None:
        raise GatewayError("invalid_request", "budget alerts need `project_id`", param="project_id")
    alert = await ctx.store.alerts.update(current["id"], me.org_id, **fields)
    if alert is None:
        raise GatewayError("not_found", "no such alert")
    return json_response(public_alert(alert))


@admin_route(write=True)
async def delete_alert(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    if not await ctx.store.alerts.delete(request.match_info["alert_id"], me.org_id):
        raise GatewayError("not_found", "no such alert")
    return web.Response(status=204)


@admin_route()
async def list_events(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    alert_id = request.query.get("alert_id") or None
    rows, total = await ctx.store.alerts.events(me.org_id, alert_id=alert_id, limit=limit, offset=offset)
    return paged(rows, total, limit, offset)


# webhooks -------------------------------------------------------------------------
@admin_route(write=True)
async def create_webhook(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    data = await read_json(request)
    url = field(data, "url", str).strip()
    if len(url) > MAX_URL:
        raise GatewayError("invalid_request", f"`url` is at most {MAX_URL} characters", param="url")
    try:
        check_webhook_url(url)
        await resolve_target(url, allow_private=DispatchSettings.from_env().allow_private)
    except WebhookTargetError as exc:
        raise GatewayError("invalid_request", f"`url`: {exc}", param="url") from None
    events = field(data, "events", list, required=False, default=["alert.fired"])
    if not events or not all(isinstance(e, str) and e in EVENT_TYPES for e in events):
        raise GatewayError("invalid_request", f"`events` must be a non-empty list of {', '.join(EVENT_TYPES)}", param="events")
    name = field(data, "name", str, required=False, default="")
    pid = await _project(ctx, me, data)
    hook_id = new_id("wh_")
    secret = new_secret()
    hook = await ctx.store.webhooks.create(hook_id=hook_id, org_id=me.org_id, project_id=pid, name=name[:200], url=url,
                                           secret=seal_secret(secret, hook_id), events=sorted(set(events)))
    return json_response({**hook, "secret": secret}, 201)


async def _hook(ctx: AdminContext, me: Principal, hook_id: str) -> dict[str, Any]:
    hook = await ctx.store.webhooks.get(hook_id, me.org_id)
    if hook is None:
        raise GatewayError("not_found", "no such webhook")
    return hook


@admin_route()
async def list_webhooks(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    rows, total = await ctx.store.webhooks.list(me.org_id, limit=limit, offset=offset)
    return paged(rows, total, limit, offset)


@admin_route()
async def get_webhook(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    return json_response(await _hook(ctx, me, request.match_info["webhook_id"]))


@admin_route(write=True)
async def delete_webhook(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    if not await ctx.store.webhooks.delete(request.match_info["webhook_id"], me.org_id):
        raise GatewayError("not_found", "no such webhook")
    return web.Response(status=204)


@admin_route()
async def list_deliveries(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    hook = await _hook(ctx, me, request.match_info["webhook_id"])
    limit, offset = page(request)
    rows, total = await ctx.store.webhooks.deliveries(hook["id"], limit=limit, offset=offset)
    return paged(rows, total, limit, offset)


# lifecycle ------------------------------------------------------------------------
async def _start(app: web.Application) -> None:
    services = app[ADMIN].services
    if services.store is None:
        return
    dispatcher = Dispatcher(services)
    evaluator = AlertEvaluator(services, dispatcher=dispatcher)
    await dispatcher.start()
    await evaluator.start()
    app[RUNNING].update(dispatcher=dispatcher, evaluator=evaluator)
    services.extras["alerts.evaluator"] = evaluator
    services.extras["webhooks.dispatcher"] = dispatcher
    log.info("alerts: evaluator every %.3gs, webhook dispatcher started", evaluator.interval_s)


async def _stop(app: web.Application) -> None:
    running = app[RUNNING]
    evaluator, dispatcher = running.pop("evaluator", None), running.pop("dispatcher", None)
    if evaluator is not None:
        await evaluator.stop()
    if dispatcher is not None:
        await dispatcher.stop()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/alerts/events", list_events)  # before /api/alerts/{alert_id}
    r.add_post("/api/alerts", create_alert)
    r.add_get("/api/alerts", list_alerts)
    r.add_get("/api/alerts/{alert_id}", get_alert)
    r.add_put("/api/alerts/{alert_id}", update_alert)
    r.add_delete("/api/alerts/{alert_id}", delete_alert)
    r.add_post("/api/webhooks", create_webhook)
    r.add_get("/api/webhooks", list_webhooks)
    r.add_get("/api/webhooks/{webhook_id}", get_webhook)
    r.add_delete("/api/webhooks/{webhook_id}", delete_webhook)
    r.add_get("/api/webhooks/{webhook_id}/deliveries", list_deliveries)
    app[RUNNING] = {}
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)  # before the store closes (cleanup)
    app.on_cleanup.append(_stop)   # idempotent safety net


def _describe() -> None:
    from ..http.openapi import op, register_paths

    obj = {"type": "object", "additionalProperties": True}
    page_obj = {"type": "object", "properties": {"data": {"type": "array", "items": obj}, "total": {"type": "integer"},
                                                 "limit": {"type": "integer"}, "offset": {"type": "integer"}}}
    read, write = ("401", "404"), ("400", "401", "403", "404")
    q = ("limit", "offset")
    s, ns = {"type": "string"}, {"type": ["string", "null"]}
    alert = {"type": "object", "additionalProperties": True, "properties": {
        "name": s, "type": {"enum": [*ALERT_TYPES, "quota"]}, "threshold": {"type": "number", "minimum": 0},
        "window_s": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_S}, "project_id": ns, "enabled": {"type": "boolean"},
        "settings": {"type": "object", "properties": {"stat": {"enum": ["avg", "p95"]}, "min_requests": {"type": "integer", "minimum": 1}}}}}
    new_alert = {**alert, "required": ["name", "type", "threshold"]}
    hook = {"type": "object", "additionalProperties": True, "required": ["url"], "properties": {
        "url": s, "events": {"type": "array", "items": {"enum": list(EVENT_TYPES)}, "minItems": 1}, "name": s, "project_id": ns}}
    register_paths({
        "/api/alerts": {
            "post": op("Create an alert: type cost_spike|error_rate|slow_response|budget, threshold, window_s, project_id, "
                       "settings {stat: avg|p95, min_requests}", "alerts", ok="201", out=obj, body=new_alert, errors=write),
            "get": op("List the organization's alerts", "alerts", out=page_obj, errors=read, query=q),
        },
        "/api/alerts/events": {"get": op("Alert events (fired/resolved), newest first; ?alert_id=", "alerts", out=page_obj,
                                         errors=read, query=q, squery={"alert_id": s})},
        "/api/alerts/{alert_id}": {
            "get": op("One alert with its state and last value", "alerts", out=obj, errors=read, params=("alert_id",)),
            "put": op("Change an alert (re-arms it)", "alerts", out=obj, body=alert, errors=write, params=("alert_id",)),
            "delete": op("Delete an alert and its events", "alerts", ok="204", errors=write, params=("alert_id",)),
        },
        "/api/webhooks": {
            "post": op("Create a webhook (url, events, project_id); the signing secret is returned once", "alerts", ok="201",
                       out=obj, body=hook, errors=write),
            "get": op("List the organization's webhooks (no secrets)", "alerts", out=page_obj, errors=read, query=q),
        },
        "/api/webhooks/{webhook_id}": {
            "get": op("One webhook (no secret)", "alerts", out=obj, errors=read, params=("webhook_id",)),
            "delete": op("Delete a webhook and its deliveries", "alerts", ok="204", errors=write, params=("webhook_id",)),
        },
        "/api/webhooks/{webhook_id}/deliveries": {
            "get": op("Deliveries of a webhook, each with every attempt (status code, error, timestamps)", "alerts",
                      out=page_obj, errors=read, params=("webhook_id",), query=q),
        },
    })


_describe()
