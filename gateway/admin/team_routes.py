"""/api/team (the org's users and their roles) and /api/teams (named teams and their members)."""
from __future__ import annotations

import asyncio
import secrets
import sqlite3

from aiohttp import web

from ..errors import GatewayError
from ..store.users import ROLES
from .context import AdminContext, Principal, admin_route, field, json_response, page, paged, read_json
from .passwords import MIN_PASSWORD_LENGTH, hash_password


def _role(data: dict, default: str = "member") -> str:
    role = field(data, "role", str, required=False, default=default)
    if role not in ROLES:
        raise GatewayError("invalid_request", f"role must be one of {', '.join(ROLES)}", param="role")
    return role


@admin_route()
async def list_members(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    items, total = await ctx.store.users.list(me.org_id, limit=limit, offset=offset)
    return paged(items, total, limit, offset)


@admin_route(write=True)
async def add_member(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    """Create a user in the caller's org. Without ``password`` one is generated and returned once."""
    data = await read_json(request)
    email = field(data, "email", str).strip().lower()
    if "@" not in email:
        raise GatewayError("invalid_request", "`email` is not an email address", param="email")
    role = _role(data)
    password = field(data, "password", str, required=False)
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(18)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise GatewayError("invalid_request", f"`password` needs at least {MIN_PASSWORD_LENGTH} characters", param="password")
    pw_hash = await asyncio.to_thread(hash_password, password, n=ctx.settings.scrypt_n)
    try:
        user = await ctx.store.users.create(org_id=me.org_id, email=email, password_hash=pw_hash, role=role)
    except sqlite3.IntegrityError:
        raise GatewayError("invalid_request", "a user with that email already exists", param="email", status=409) from None
    if generated:
        user = {**user, "password": password}
    return json_response(user, 201, headers={"Cache-Control": "no-store"})


@admin_route(write=True)
async def remove_member(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    user_id = request.match_info["user_id"]
    if user_id == me.user_id:
        raise GatewayError("invalid_request", "you cannot remove yourself")
    if not await ctx.store.users.delete(user_id, me.org_id):
        raise GatewayError("not_found", "no such user")
    return web.Response(status=204)


@admin_route()
async def list_teams(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    limit, offset = page(request)
    items, total = await ctx.store.teams.list(me.org_id, limit=limit, offset=offset)
    return paged(items, total, limit, offset)


@admin_route(write=True)
async def create_team(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    data = await read_json(request)
    name = field(data, "name", str).strip()
    try:
        team = await ctx.store.teams.create(me.org_id, name)
    except sqlite3.IntegrityError:
        raise GatewayError("invalid_request", f"a team named {name!r} already exists", param="name", status=409) from None
    return json_response(team, 201)


async def _team(ctx: AdminContext, me: Principal, request: web.Request) -> dict:
    team = await ctx.store.teams.get(request.match_info["team_id"], me.org_id)
    if team is None:
        raise GatewayError("not_found", "no such team")
    return team


@admin_route()
async def get_team(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    team = await _team(ctx, me, request)
    return json_response({**team, "members": await ctx.store.teams.members(team["id"])})


@admin_route(write=True)
async def delete_team(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    team = await _team(ctx, me, request)
    await ctx.store.teams.delete(team["id"], me.org_id)
    return web.Response(status=204)


@admin_route(write=True)
async def add_team_member(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    team = await _team(ctx, me, request)
    data = await read_json(request)
    user = await ctx.store.users.get(field(data, "user_id", str), me.org_id)
    if user is None:
        raise GatewayError("not_found", "no such user", param="user_id")
    return json_response(await ctx.store.teams.add_member(team["id"], user["id"], _role(data)), 201)


@admin_route(write=True)
async def remove_team_member(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    team = await _team(ctx, me, request)
    if not await ctx.store.teams.remove_member(team["id"], request.match_info["user_id"]):
        raise GatewayError("not_found", "no such member")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/team", list_members)
    r.add_post("/api/team", add_member)
    r.add_delete("/api/team/{user_id}", remove_member)
    r.add_get("/api/teams", list_teams)
    r.add_post("/api/teams", create_team)
    r.add_get("/api/teams/{team_id}", get_team)
    r.add_delete("/api/teams/{team_id}", delete_team)
    r.add_post("/api/teams/{team_id}/members", add_team_member)
    r.add_delete("/api/teams/{team_id}/members/{user_id}", remove_team_member)
