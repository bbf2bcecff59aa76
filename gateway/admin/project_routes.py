"""/api/projects: tenants with their limits and budget, their API keys, their provider keys.

Every query is scoped by the caller's org: another org's project is 404, like a missing one.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from ..crypto import generate_api_key, hash_api_key
from ..errors import GatewayError
from .context import AdminContext, Principal, admin_route, field, json_response, page, paged, read_json

# Per-tenant settings the limits/budget middlewares enforce: name -> (type, check, help)
SETTINGS: dict[str, tuple[Any, str]] = {
    "rpm": (int, "requests per minute"),
    "tpm": (int, "tokens per minute"),
    "max_concurrency": (int, "requests in flight"),
    "budget_micros": (int, "spend limit per budget_period, micro-USD"),
    "budget_period": (str, "day | month"),
    "allowed_models": (list, "model aliases this project may call"),
    "semantic_cache": ((bool, dict), "on/off, or {enabled, semantic, threshold} for this project"),
    "capture_text": (bool, "keep (DLP-masked) prompt and completion text in usage records"),
    "dlp": (dict, "DLP policy override for this project (see docs/dlp.md)"),
    "limits": (dict, "rate-limit overrides (see docs/limits.md)"),
    "budget": (dict, "budget overrides (see docs/limits.md)"),
}
PLANS = ("free", "starter", "pro", "agency", "enterprise", "test")
# What the ratelimit and budget middlewares read from the nested `limits` and `budget` objects
# (they int() / convert these on every request: a string there was a 500 for the tenant's traffic).
NESTED: dict[str, tuple[tuple[str, ...], type | tuple[type, ...], float]] = {
    "limits": (("rpm", "tpm", "monthly", "key_rpm"), int, 2**63 - 1),
    "budget": (("daily_usd", "monthly_usd", "key_daily_usd", "key_monthly_usd"), (int, float), 9e12),
}


def validate_settings(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GatewayError("invalid_request", "`settings` must be an object", param="settings")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in SETTINGS:
            raise GatewayError("invalid_request", f"unknown setting {key!r} (known: {', '.join(SETTINGS)})", param=f"settings.{key}")
        kind = SETTINGS[key][0]
        if item is None:
            continue
        if (kind is int and (isinstance(item, bool) or not isinstance(item, int) or item < 0)) or not isinstance(item, kind):
            expected = "non-negative integer" if kind is int else " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise GatewayError("invalid_request", f"settings.{key}: expected a {expected}", param=f"settings.{key}")
        if key == "budget_period" and item not in ("day", "month"):
            raise GatewayError("invalid_request", "settings.budget_period: expected 'day' or 'month'", param=f"settings.{key}")
        if key == "allowed_models" and not all(isinstance(m, str) for m in item):
            raise GatewayError("invalid_request", "settings.allowed_models: expected a list of strings", param=f"settings.{key}")
        if kind is int and item > 2**63 - 1:
            raise GatewayError("invalid_request", f"settings.{key}: at most {2**63 - 1}", param=f"settings.{key}")
        if key in NESTED:
            _check_nested(key, item)
        out[key] = item
    return out


def _check_nested(key: str, value: dict[str, Any]) -> None:
    names, kind, most = NESTED[key]
    for name, item in value.items():
        param = f"settings.{key}.{name}"
        if name not in names:
            raise GatewayError("invalid_request", f"unknown setting {param} (known: {', '.join(names)})", param=param)
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, kind) or not 0 <= item <= most:
            expected = "integer" if kind is int else "number"
            raise GatewayError("invalid_request", f"{param}: expected a {expected} from 0 to {most:g}", param=param)


async def _project(ctx: AdminContext, me: Principal, request: web.Request) -> dict[str, Any]:
    project = await ctx.store.projects.get(request.match_info["project_id"], me.org_id)
    if project is None:
        raise GatewayError("not_found", "no such project")
    return project


async def _team_id(ctx: AdminContext, me: Principal, data: dict[str, Any]) -> str | None:
    team_id = field(data, "team_id", str, required=False)
    if team_id is not None and await ctx.store.teams.get(team_id, me.org_id) is None:
        raise GatewayError("not_found", "no such team", param="team_id")
    return team_id


def _plan(data: dict[str, Any], default: str | None) -> str | None:
    plan = field(data, "plan", str, required=False, default=default)
    if plan is not None and plan not in PLANS:
        raise GatewayError("invalid_request", f"plan must be one of {', '.join(PLANS)}", param="plan")
    return plan


# projects -------------------------------------------------------------------------
@admin_route()
async def list_projects(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    items, total = await ctx.store.projects.list(me.org_id, limit=limit, offset=offset)
    return paged(items, total, limit, offset)


@admin_route(write=True)
async def create_project(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    data = await read_json(request)
    name = field(data, "name", str).strip()
    settings = validate_settings(data.get("settings") or {})
    try:
        project = await ctx.store.projects.create(
            org_id=me.org_id, name=name, plan=_plan(data, "free"), team_id=await _team_id(ctx, me, data), settings=settings
        )
    except sqlite3.IntegrityError:
        raise GatewayError("invalid_request", f"a project named {name!r} already exists", param="name", status=409) from None
    return json_response(project, 201)


@admin_route()
async def get_project(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    return json_response(await _project(ctx, me, request))


@admin_route(write=True)
async def update_project(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    data = await read_json(request)
    changes: dict[str, Any] = {}
    if "name" in data:
        changes["name"] = field(data, "name", str).strip()
    if "plan" in data:
        changes["plan"] = _plan(data, None)
    if "team_id" in data:
        changes["team_id"] = await _team_id(ctx, me, data)
    if "settings" in data:  # merge; a null value removes a setting
        merged = {**project["settings"], **(data["settings"] if isinstance(data["settings"], dict) else {"_": 0})}
        changes["settings"] = validate_settings({k: v for k, v in merged.items() if v is not None})
    try:
        updated = await ctx.store.projects.update(project["id"], me.org_id, **changes)
    except sqlite3.IntegrityError:
        raise GatewayError("invalid_request", "a project with that name already exists", param="name", status=409) from None
    ctx.invalidate_keys()
    return json_response(updated)


@admin_route(write=True)
async def delete_project(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    await ctx.store.projects.delete(project["id"], me.org_id)
    ctx.invalidate_keys()
    return web.Response(status=204)


# API keys ---------------------------------------------------------------------------
async def create_key(ctx: Any, project_id: str, *, name: str = "", test: bool = False,
                     expires_in: float | None = None, created_by: str | None = None) -> dict[str, Any]:
    """Create a key; the result's ``key`` is the only time the plaintext exists outside the client."""
    plaintext, parts = generate_api_key(is_test=test)
    expires_at = ctx.store.clock() + expires_in if expires_in else None
    row = await ctx.store.api_keys.create(
        key_id=parts.key_id, project_id=project_id, prefix=parts.prefix, secret_hash=hash_api_key(plaintext),
        is_test=test, name=name, created_by=created_by, expires_at=expires_at,
    )
    return {**row, "key": plaintext}


@admin_route()
async def list_keys(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    limit, offset = page(request)
    items, total = await ctx.store.api_keys.list(project["id"], limit=limit, offset=offset)
    return paged(items, total, limit, offset)


@admin_route(write=True)
async def post_key(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    data = await read_json(request) if request.can_read_body else {}
    expires_in = data.get("expires_in")
    if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0):
        raise GatewayError("invalid_request", "`expires_in` must be a positive number of seconds", param="expires_in")
    created = await create_key(
        ctx, project["id"], name=field(data, "name", str, required=False, default=""),
        test=field(data, "test", bool, required=False, default=False), expires_in=expires_in, created_by=me.user_id,
    )
    return json_response(created, 201, headers={"Cache-Control": "no-store"})


@admin_route(write=True)
async def delete_key(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    key_id = request.match_info["key_id"]
    if await ctx.store.api_keys.get(key_id, project["id"]) is None:
        raise GatewayError("not_found", "no such key")
    await ctx.store.api_keys.revoke(key_id, project["id"])
    ctx.invalidate_keys(key_id)
    return web.Response(status=204)


# provider keys ------------------------------------------------------------------------
@admin_route()
async def list_providers(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    items = await ctx.store.provider_keys.list(project["id"])
    return paged(items, len(items), len(items), 0)


@admin_route(write=True)
async def put_provider(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    data = await read_json(request)
    provider = field(data, "provider", str)
    api_key = field(data, "api_key", str)
    configured = getattr(getattr(ctx.services, "config", None), "providers", None) or {}
    if configured and provider not in configured:
        raise GatewayError("invalid_request", f"unknown provider {provider!r} (configured: {', '.join(configured)})", param="provider")
    blob, kid = ctx.master_keys().seal(api_key, project_id=project["id"], provider=provider)
    row = await ctx.store.provider_keys.put(project["id"], provider, blob, kid, hint=api_key[-4:] if len(api_key) >= 12 else "")
    ctx.invalidate_keys()
    return json_response(row, 201)


@admin_route(write=True)
async def delete_provider(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request)
    if not await ctx.store.provider_keys.delete(project["id"], request.match_info["provider"]):
        raise GatewayError("not_found", "no key stored for that provider")
    ctx.invalidate_keys()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/projects", list_projects)
    r.add_post("/api/projects", create_project)
    r.add_get("/api/projects/{project_id}", get_project)
    r.add_patch("/api/projects/{project_id}", update_project)
    r.add_delete("/api/projects/{project_id}", delete_project)
    r.add_get("/api/projects/{project_id}/keys", list_keys)
    r.add_post("/api/projects/{project_id}/keys", post_key)
    r.add_delete("/api/projects/{project_id}/keys/{key_id}", delete_key)
    r.add_get("/api/projects/{project_id}/providers", list_providers)
    r.add_post("/api/projects/{project_id}/providers", put_provider)
    r.add_delete("/api/projects/{project_id}/providers/{provider}", delete_provider)
