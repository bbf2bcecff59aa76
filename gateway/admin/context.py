"""What every admin handler shares: the context (store, tokens, settings), the caller, helpers.

Other admin modules (usage, analytics, alerts) add routes the same way::

    from gateway.admin.context import admin_route, json_response, page

    @admin_route()                       # any signed-in user of the org (read)
    async def list_things(request, ctx, me): ...   # me.org_id scopes every query

    @admin_route(write=True)             # role admin only
    async def create_thing(request, ctx, me): ...

A resource of another organization is answered 404 (``not_found``), never 403, so ids
cannot be probed across organizations.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from ..crypto import MasterKeyError, MasterKeys
from ..errors import GatewayError
from .passwords import hash_password
from .settings import AdminSettings
from .tokens import TokenError, TokenService

__all__ = ["ADMIN", "AdminContext", "Principal", "admin_route", "json_response", "read_json", "page", "paged"]

log = logging.getLogger("watchllm.admin")
MAX_PAGE = 500
MAX_OFFSET = 10**9


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    org_id: str
    role: str
    email: str
    claims: dict[str, Any]


class AdminContext:
    def __init__(self, services: Any, settings: AdminSettings | None = None) -> None:
        self.services = services
        self.settings = settings or AdminSettings.from_env()
        self._tokens: TokenService | None = None
        self._lock = asyncio.Lock()
        self._master: MasterKeys | None | bool = False  # False: not read yet

    @property
    def store(self) -> Any:
        store = self.services.store
        if store is None:
            raise GatewayError("service_unavailable", "the admin API needs a store (store.url)")
        return store

    @property
    def tokens(self) -> TokenService:
        assert self._tokens is not None, "AdminContext.ready() not awaited"
        return self._tokens

    def master_keys(self) -> MasterKeys:
        if self._master is False:
            try:
                self._master = MasterKeys.from_env()
            except MasterKeyError as exc:
                log.error("admin: %s", exc)
                self._master = None
        if self._master is None:
            raise GatewayError("service_unavailable", "provider keys need WATCHLLM_MASTER_KEY (base64 of 32 bytes)")
        return self._master  # type: ignore[return-value]

    async def ready(self) -> None:
        """Resolve the JWT secret and run the first-start bootstrap, once."""
        if self._tokens is not None:
            return
        async with self._lock:
            if self._tokens is not None:
                return
            store, s = self.store, self.settings
            secret = s.jwt_secret or await store.meta.get_or_set("jwt_secret", secrets.token_urlsafe(48))
            await self._bootstrap(store)
            self._tokens = TokenService(secret, s.issuer, s.audience, s.access_ttl, s.refresh_ttl, s.leeway)

    async def _bootstrap(self, store: Any) -> None:
        s = self.settings
        if not (s.bootstrap_email and s.bootstrap_password) or await store.users.count() > 0:
            return
        org = await store.orgs.ensure()
        pw = await asyncio.to_thread(hash_password, s.bootstrap_password, n=s.scrypt_n)
        await store.users.create(org_id=org["id"], email=s.bootstrap_email, password_hash=pw, role="admin")
        log.info("admin: bootstrap admin user created from WATCHLLM_ADMIN_EMAIL")

    async def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GatewayError("invalid_api_key", "admin endpoints need `Authorization: Bearer <JWT>` from /api/auth/login")
        return await self.principal(token.strip(), typ="access")

    async def principal(self, token: str, *, typ: str) -> Principal:
        denied = GatewayError("invalid_api_key", "invalid or expired admin token")
        try:
            claims = self.tokens.decode(token, typ=typ)
        except TokenError as exc:
            log.info("admin: token rejected (%s)", exc)
            raise denied from None
        if await self.store.users.is_token_revoked(claims["jti"]):
            raise denied
        user = await self.store.users.get(claims["sub"])
        # The org and role come from the database, not the token: a moved or demoted user is re-checked.
        if user is None or user["disabled"] or user["org_id"] != claims["org"]:
            raise denied
        return Principal(user["id"], user["org_id"], user["role"], user["email"], claims)

    def invalidate_keys(self, key_id: str | None = None) -> None:
        """Drop cached API-key lookups in this process (other processes: within the cache TTL)."""
        auth = self.services.extras.get("auth.keys")
        if auth is not None:
            auth.invalidate(key_id)


ADMIN: web.AppKey[AdminContext] = web.AppKey("watchllm_admin", AdminContext)

Handler = Callable[..., Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(err: GatewayError) -> web.Response:
    return json_response(err.body(), err.status, err.headers or None)


def admin_route(*, auth: bool = True, write: bool = False) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler ``(request, ctx, me)``: authenticate, check the role, turn GatewayError into JSON."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            ctx = request.app[ADMIN]
            try:
                await ctx.ready()
                if not auth:
                    return await fn(request, ctx, None)
                me = await ctx.authenticate(request)
                if write and me.role != "admin":
                    raise GatewayError("forbidden", "this action needs the admin role")
                return await fn(request, ctx, me)
            except GatewayError as err:
                return error_response(err)

        return handler

    return wrap


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise GatewayError("invalid_request", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise GatewayError("invalid_request", "the body must be a JSON object")
    return data


def page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", 50))
        offset = int(request.query.get("offset", 0))
    except ValueError:
        raise GatewayError("invalid_request", "limit and offset must be integers") from None
    if not 1 <= limit <= MAX_PAGE:
        raise GatewayError("invalid_request", f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}", param="limit")
    if not 0 <= offset <= MAX_OFFSET:  # past SQLite's 64-bit integers the query itself would fail (500)
        raise GatewayError("invalid_request", f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}", param="offset")
    return limit, offset


def paged(items: list[Any], total: int, limit: int, offset: int) -> web.Response:
    return json_response({"data": items, "total": total, "limit": limit, "offset": offset})


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = True, default: Any = None) -> Any:
    """A typed body field, or 400 ``invalid_request`` naming it."""
    if name not in data or data[name] is None:
        if required:
            raise GatewayError("invalid_request", f"`{name}` is required", param=name)
        return default
    value = data[name]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise GatewayError("invalid_request", f"`{name}` must be a {kind.__name__}", param=name)
    if isinstance(value, str) and not value.strip():
        raise GatewayError("invalid_request", f"`{name}` must not be empty", param=name)
    return value
