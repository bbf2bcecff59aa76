"""Admin views over live middleware state: budget spend and the semantic cache of a project.

The layers are found as ``services.extras["middleware.<name>"]`` (set when the server
builds the pipeline); without the layer the route answers 404 naming what is missing.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import GatewayError
from .context import AdminContext, Principal, admin_route, json_response


def _layer(ctx: AdminContext, name: str) -> Any:
    layer = ctx.services.extras.get(f"middleware.{name}")
    if layer is None:
        raise GatewayError("not_found", f"the `{name}` middleware is not in the pipeline")
    return layer


async def _project_id(ctx: AdminContext, me: Principal, request: web.Request) -> str:
    project = await ctx.store.projects.get(request.match_info["project_id"], me.org_id)
    if project is None:
        raise GatewayError("not_found", "no such project")
    return str(project["id"])


@admin_route()
async def get_spend(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    pid = await _project_id(ctx, me, request)
    period = request.query.get("period", "month")
    if period not in ("day", "month"):
        raise GatewayError("invalid_request", "period must be 'day' or 'month'", param="period")
    budget = _layer(ctx, "budget")
    return json_response(await budget.spend(pid, period=period, scope="project"))


@admin_route()
async def get_cache(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    pid = await _project_id(ctx, me, request)
    return json_response({"project_id": pid, **_layer(ctx, "semantic_cache").stats(pid)})


@admin_route(write=True)
async def delete_cache(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    pid = await _project_id(ctx, me, request)
    flushed = await _layer(ctx, "semantic_cache").flush(pid)
    return json_response({"project_id": pid, "flushed": flushed})


def _describe() -> None:
    from ..http.openapi import op, register_paths

    register_paths({
        "/api/projects/{project_id}/spend": {"get": op("Budget spend of a project in the current day or month", "usage",
                                                       out="OpenAIObject", errors=("400", "401", "404"), params=("project_id",),
                                                       squery={"period": {"enum": ["day", "month"]}})},
        "/api/projects/{project_id}/cache": {
            "get": op("Semantic cache size and hit rates of a project", "projects", out="OpenAIObject",
                      errors=("401", "404"), params=("project_id",)),
            "delete": op("Flush a project's cache (every replica with Redis)", "projects", out="OpenAIObject",
                         errors=("401", "403", "404"), params=("project_id",)),
        },
    })


_describe()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/projects/{project_id}/spend", get_spend)
    app.router.add_get("/api/projects/{project_id}/cache", get_cache)
    app.router.add_delete("/api/projects/{project_id}/cache", delete_cache)
