"""/api/auth: login (with lockout), refresh (rotating), logout (jti denylist), me."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..errors import GatewayError
from .context import AdminContext, Principal, admin_route, field, json_response, read_json
from .passwords import DUMMY_HASH, verify_password

log = logging.getLogger("watchllm.admin")
_BAD_LOGIN = "wrong email or password"


def _locked(until: float, now: float) -> GatewayError:
    wait = max(1, int(until - now + 0.999))
    return GatewayError("account_locked", "too many failed logins; the account is locked", headers={"Retry-After": str(wait)})


async def _token_pair(ctx: AdminContext, user: dict[str, Any]) -> dict[str, Any]:
    access, claims = ctx.tokens.issue(user_id=user["id"], org_id=user["org_id"], role=user["role"])
    refresh, _ = ctx.tokens.issue(user_id=user["id"], org_id=user["org_id"], role=user["role"], typ="refresh")
    return {
        "access_token": access, "refresh_token": refresh, "token_type": "Bearer",
        "expires_in": int(claims["exp"] - claims["iat"]),
        "user": {"id": user["id"], "email": user["email"], "role": user["role"], "org_id": user["org_id"]},
    }


@admin_route(auth=False)
async def login(request: web.Request, ctx: AdminContext, _: None) -> web.Response:
    data = await read_json(request)
    email = field(data, "email", str).strip().lower()
    password = field(data, "password", str)
    s, users = ctx.settings, ctx.store.users
    now = s.clock()
    until = await users.locked_until(email)
    if until is not None and until > now:
        raise _locked(until, now)  # checked before the password: a right guess during lockout learns nothing
    user = await users.credentials(email)
    ok = await asyncio.to_thread(verify_password, password, user["password_hash"] if user else DUMMY_HASH)
    if not ok or user is None or user["disabled"]:
        locked = await users.record_failure(email, now, window=s.failure_window, max_failures=s.max_failures, lock_for=s.lockout)
        log.info("admin: failed login (locked=%s)", bool(locked))
        if locked:
            raise _locked(locked, now)
        raise GatewayError("invalid_api_key", _BAD_LOGIN)
    await users.clear_failures(email)
    await users.touch_login(user["id"], now)
    return json_response(await _token_pair(ctx, user))


@admin_route(auth=False)
async def refresh(request: web.Request, ctx: AdminContext, _: None) -> web.Response:
    data = await read_json(request)
    me = await ctx.principal(field(data, "refresh_token", str), typ="refresh")
    # Rotation: a refresh token works once; reuse of a stolen one fails after the owner refreshed.
    await ctx.store.users.revoke_token(me.claims["jti"], float(me.claims["exp"]))
    user = await ctx.store.users.get(me.user_id)
    assert user is not None
    return json_response(await _token_pair(ctx, user))


@admin_route()
async def logout(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    await ctx.store.users.revoke_token(me.claims["jti"], float(me.claims["exp"]))
    data = await read_json(request) if request.can_read_body else {}
    token = data.get("refresh_token")
    if isinstance(token, str) and token:
        try:
            other = await ctx.principal(token, typ="refresh")
        except GatewayError:
            other = None
        if other is not None and other.user_id == me.user_id:
            await ctx.store.users.revoke_token(other.claims["jti"], float(other.claims["exp"]))
    return web.Response(status=204)


@admin_route()
async def me(request: web.Request, ctx: AdminContext, me: Principal) -> web.Response:
    org = await ctx.store.orgs.get(me.org_id)
    return json_response({"id": me.user_id, "email": me.email, "role": me.role, "org_id": me.org_id, "org_name": org["name"] if org else None})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/refresh", refresh)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/me", me)
