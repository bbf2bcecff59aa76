"""Routes mounted by the router: ``GET /v1/providers`` and ``GET /providers/health``.

The handlers find the router through ``services.extras["router"]`` (set when the
``router`` middleware is built); without one they answer 404. Neither needs a
credential and neither shows one: only names, types, models and circuit state.
"""
from __future__ import annotations

import orjson
from aiohttp import web

from .keys import SERVICES

__all__ = ["setup"]

_JSON = "application/json"


def _router(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app[SERVICES].extras.get("router")


def _missing() -> web.Response:
    body = {"error": {"message": "no router in the pipeline", "type": "invalid_request_error", "code": "not_found",
                      "param": None, "details": None}}
    return web.Response(status=404, body=orjson.dumps(body), content_type=_JSON)


async def list_providers(request: web.Request) -> web.Response:
    router = _router(request)
    if router is None:
        return _missing()
    return web.Response(body=orjson.dumps(router.providers_view()), content_type=_JSON,
                        headers={"Cache-Control": "no-store"})


async def providers_health(request: web.Request) -> web.Response:
    router = _router(request)
    if router is None:
        return _missing()
    body = await router.providers_health()
    return web.Response(status=200 if body["status"] == "ok" else 503, body=orjson.dumps(body), content_type=_JSON,
                        headers={"Cache-Control": "no-store"})


def _describe() -> None:
    try:
        from .openapi import op, register_paths
    except ImportError:  # pragma: no cover - the OpenAPI document is optional
        return
    register_paths({
        "/v1/providers": {"get": op("Configured providers, their models and circuit state (no credentials)", "v1",
                                    out="OpenAIObject", errors=("404",), security=None)},
        "/providers/health": {"get": op("Active probe of every provider, cached a few seconds", "v1",
                                        out="OpenAIObject", errors=("404", "503"), security=None)},
    })


_describe()


def setup(app: web.Application, services: object) -> None:
    app.router.add_get("/v1/providers", list_providers)
    app.router.add_get("/providers/health", providers_health)
