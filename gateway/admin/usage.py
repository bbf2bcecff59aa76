"""Usage rows over the admin API: per-project usage and CSV export, the request log, external ingest.

Every query is scoped by the caller's organization: a project of another org is 404,
and the request log only searches ``project_id IN (projects of my org)``.
Times accept Unix seconds, ISO 8601, ``now`` and ``now-<n><s|m|h|d|w>`` (``now-7d``).
Money leaves as USD strings (``cost_usd``) next to the integer ``cost_micros``.
"""
from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..pricing import micros_to_usd
from ..store.usage import COLUMNS, usage_filter
from .context import AdminContext, Principal, admin_route, field, json_response, read_json

__all__ = ["add_routes", "parse_time", "time_range", "public_row"]

MAX_USAGE_PAGE = 1000
MAX_INT64 = 2**63 - 1
_REL = re.compile(r"^now(?:-(\d+(?:\.\d+)?)([smhdw]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXPORT_COLUMNS = tuple(c for c in COLUMNS if c not in ("request_text", "response_text"))


def parse_time(value: str | None, *, param: str, now: float | None = None) -> float | None:
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    v = value.strip()
    m = _REL.match(v)
    if m:
        return now - (float(m.group(1)) * _UNITS[m.group(2)] if m.group(1) else 0)
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError("invalid_request", f"`{param}`: expected Unix seconds, ISO 8601 or now-<n><s|m|h|d|w>", param=param) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def time_range(request: web.Request) -> tuple[float | None, float | None]:
    since = parse_time(request.query.get("from"), param="from")
    until = parse_time(request.query.get("to"), param="to")
    if since is not None and until is not None and since > until:
        raise GatewayError("invalid_request", "`from` must not be after `to`", param="from")
    return since, until


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise GatewayError("invalid_request", f"`{name}` must be an integer", param=name) from None
    if not lo <= value <= hi:
        raise GatewayError("invalid_request", f"`{name}` must be {lo}..{hi}", param=name)
    return value


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["cost_usd"] = micros_to_usd(int(out.get("cost_micros") or 0))
    out["cost_saved_usd"] = micros_to_usd(int(out.get("cost_saved_micros") or 0))
    return out


def public_summary(s: dict[str, Any]) -> dict[str, Any]:
    out = dict(s)
    n = int(out.get("requests") or 0)
    out["cost_usd"] = micros_to_usd(int(out.get("cost_micros") or 0))
    out["cost_saved_usd"] = micros_to_usd(int(out.get("cost_saved_micros") or 0))
    out["cache_hit_rate"] = round(int(out.get("cache_hits") or 0) / n, 4) if n else 0.0
    out["error_rate"] = round(int(out.get("errors") or 0) / n, 4) if n else 0.0
    return out


async def _project(ctx: AdminContext, me: Principal, project_id: str) -> dict[str, Any]:
    project = await ctx.store.projects.get(project_id, me.org_id)
    if project is None:
        raise GatewayError("not_found", "no such project")
    return project


def _filters(request: web.Request) -> dict[str, Any]:
    cached = request.query.get("cached")
    return {
        "model": request.query.get("model") or None,
        "status": request.query.get("status") or None,
        "provider": request.query.get("provider") or None,
        "cached": None if cached is None else cached.lower() in ("1", "true", "yes"),
    }


@admin_route()
async def project_usage(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    project = await _project(ctx, me, request.match_info["project_id"])
    since, until = time_range(request)
    limit = _int(request, "limit", 100, 1, MAX_USAGE_PAGE)
    offset = _int(request, "offset", 0, 0, 10**9)
    f = usage_filter(project_id=project["id"], since=since, until=until, **_filters(request))
    repo = ctx.store.usage
    rows = await repo.list(f, limit=limit, offset=offset)
    summary = await repo.summary(f)
    return json_response({
        "project_id": project["id"], "data": [public_row(r) for r in rows], "total": summary.get("requests", 0),
        "limit": limit, "offset": offset, "summary": public_summary(summary),
    })


@admin_route()
async def export_usage(request: web.Request, ctx: AdminContext, me: Principal) -> web.StreamResponse:
    """CSV, streamed in batches from a read-only connection: memory stays flat at any size."""
    project = await _project(ctx, me, request.match_info["project_id"])
    since, until = time_range(request)
    f = usage_filter(project_id=project["id"], since=since, until=until, **_filters(request))
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="usage-{project["id"]}.csv"',
        "Cache-Control": "no-store",
    })
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(EXPORT_COLUMNS)
    n = 0
    async for row in ctx.store.usage.iter_rows(f, EXPORT_COLUMNS):
        out.writerow(row)
        n += 1
        if n % 1000 == 0:
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    await resp.write(buf.getvalue().encode())
    await resp.write_eof()
    return resp


@admin_route()
async def list_requests(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    since, until = time_range(request)
    limit = _int(request, "limit", 50, 1, MAX_USAGE_PAGE)
    offset = _int(request, "offset", 0, 0, 10**9)
    project_id = request.query.get("project_id")
    if project_id:
        await _project(ctx, me, project_id)
    f = usage_filter(project_id=project_id or None, org_id=None if project_id else me.org_id, since=since, until=until,
                     **_filters(request))
    repo = ctx.store.usage
    rows = await repo.list(f, limit=limit, offset=offset)
    return json_response({"data": [public_row(r) for r in rows], "total": await repo.count(f), "limit": limit, "offset": offset})


@admin_route()
async def get_request(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    row = await ctx.store.usage.get(request.match_info["request_id"], org_id=me.org_id)
    if row is None:
        raise GatewayError("not_found", "no such request")
    return json_response(public_row(row))


@admin_route(write=True)
async def ingest_run(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    """Record a call made outside the proxy, so all usage sits in one place."""
    data = await read_json(request)
    project = await _project(ctx, me, field(data, "project_id", str))
    model = field(data, "model", str)
    provider = field(data, "provider", str, required=False)
    numbers = {}
    for name in ("prompt_tokens", "completion_tokens", "cost_micros", "status"):
        value = field(data, name, int, required=False, default=0 if name != "status" else 200)
        if not 0 <= value <= MAX_INT64:  # beyond, SQLite cannot store it (was a 500)
            raise GatewayError("invalid_request", f"`{name}` must be 0..{MAX_INT64}", param=name)
        numbers[name] = value
    latency = data.get("latency_ms")
    if latency is not None and (not isinstance(latency, (int, float)) or isinstance(latency, bool) or not 0 <= latency <= MAX_INT64):
        raise GatewayError("invalid_request", "`latency_ms` must be a non-negative number", param="latency_ms")
    run_id = field(data, "id", str, required=False) or f"ext_{uuid.uuid4().hex}"
    created = data.get("created_at")
    created_at = float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else time.time()
    row = {c: None for c in COLUMNS}
    row.update({
        "id": run_id, "project_id": project["id"], "endpoint": field(data, "endpoint", str, required=False) or "external",
        "model_requested": model, "model_served": model, "provider": provider, "attempts": 1,
        "prompt_tokens": numbers["prompt_tokens"], "completion_tokens": numbers["completion_tokens"],
        "cost_micros": numbers["cost_micros"], "tokens_saved": 0, "cost_saved_micros": 0, "latency_ms": latency,
        "status": numbers["status"], "ended": "complete" if numbers["status"] < 400 else "error",
        "error_code": field(data, "error_code", str, required=False), "source": "external", "created_at": created_at,
    })
    created_new = await ctx.store.usage.insert_external(tuple(row[c] for c in COLUMNS))
    return json_response({"id": run_id, "created": created_new}, status=201 if created_new else 200)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/projects/{project_id}/usage", project_usage)
    r.add_get("/api/projects/{project_id}/usage/export", export_usage)
    r.add_get("/api/requests", list_requests)
    r.add_get("/api/requests/{request_id}", get_request)
    r.add_post("/api/integrations/run", ingest_run)


def _describe() -> None:
    from ..http.openapi import op, register_paths

    obj = {"type": "object", "additionalProperties": True}
    read, pid = ("400", "401", "404"), ("project_id",)
    s, i = {"type": "string"}, {"type": "integer", "minimum": 0}
    filters = {"from": s, "to": s, "model": s, "status": s, "provider": s, "cached": {"enum": ["true", "false"]}}
    run = {"type": "object", "additionalProperties": True, "required": ["project_id", "model"], "properties": {
        "project_id": s, "model": s, "provider": s, "prompt_tokens": i, "completion_tokens": i, "cost_micros": i,
        "status": i, "latency_ms": {"type": "number", "minimum": 0}, "id": s, "created_at": {"type": "number"},
        "endpoint": s, "error_code": s}}
    register_paths({
        "/api/projects/{project_id}/usage": {"get": op(
            "Usage rows of a project with a summary (from, to, model, status, provider, cached; limit <= 1000)", "usage",
            out=obj, errors=read, params=pid, query=("limit", "offset"), squery=filters)},
        "/api/projects/{project_id}/usage/export": {"get": {
            **op("Usage rows as CSV, streamed (same filters)", "usage", errors=read, params=pid, squery=filters),
            "responses": {"200": {"description": "text/csv", "content": {"text/csv": {"schema": {"type": "string"}}}}}}},
        "/api/requests": {"get": op("The request log of my organization (filters, pagination)", "usage", out=obj, errors=read,
                                    query=("limit", "offset"), squery={**filters, "project_id": s})},
        "/api/requests/{request_id}": {"get": op("One request's usage row", "usage", out=obj, errors=read, params=("request_id",))},
        "/api/integrations/run": {"post": op("Record a call made outside the proxy", "usage", ok="201", out=obj, body=run,
                                             errors=("400", "401", "403", "404"))},
    })


_describe()
