"""``GET /v1/tools``: the server-side tools the caller's models may use.

Authenticated like ``/v1/models``. Each entry is the OpenAI ``tools`` item the
gateway offers to the model, plus the aliases that enable it.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import GatewayError
from ..plugin import Services
from .keys import SERVICES
from .request import request_id
from .routes import error_response

__all__ = ["setup", "tool_schema"]


def tool_schema(tool: Any) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for a gateway tool."""
    return {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}


async def list_tools(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    rid = request_id(request)
    authenticate = services.extras.get("authenticate")
    if authenticate is not None:
        try:
            await authenticate(request.headers, request.remote or "")
        except GatewayError as err:
            return error_response(err, rid)
    config = services.config  # the live config (hot reload swaps it)
    data = []
    for name, tool in services.tools.items():
        models = [alias for alias, mc in config.models.items() if name in mc.tools]
        if not models:
            continue  # enabled under `tools:` but offered to no model
        data.append({**tool_schema(tool), "object": "tool", "id": name, "models": models, "timeout": getattr(tool, "timeout", None)})
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json", headers={"x-request-id": rid})


def _describe() -> None:
    try:
        from .openapi import op, register_paths
    except ImportError:  # pragma: no cover - the OpenAPI document is optional
        return
    register_paths({"/v1/tools": {"get": op("Server-side tools offered to the caller's models", "v1",
                                            out="OpenAIObject", errors=("401",), security="apiKey")}})


_describe()


def setup(app: web.Application, services: Services) -> None:
    app.router.add_get("/v1/tools", list_tools)
