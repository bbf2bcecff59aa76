"""OpenAI-compatible routes: parse once into a Call, run the chain, write the Reply."""
from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp import web

from .. import __version__
from ..call import Endpoint
from ..errors import GatewayError
from ..pipeline import Handler
from .keys import CHAIN, RUNTIME, SERVICES, WRITER
from .request import make_call, read_json, request_id

__all__ = ["setup_routes", "error_response"]

log = logging.getLogger("watchllm.http")


def error_response(err: GatewayError, rid: str | None = None) -> web.Response:
    headers = dict(err.headers)
    if rid:
        headers["x-request-id"] = rid
    return web.Response(status=err.status, body=orjson.dumps(err.body()), headers=headers, content_type="application/json")


_OVERLOADED = GatewayError("service_unavailable", "the gateway is at capacity; retry shortly", headers={"Retry-After": "1"})


def _proxy(endpoint: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        app = request.app  # a property chain in aiohttp: looked up once
        services = app[SERVICES]
        runtime = app[RUNTIME]
        rid = request_id(request)
        # Load shedding: past server.max_in_flight the excess is refused at once, before its body is read,
        # so admitted requests keep their latency and memory stays bounded.
        if runtime["in_flight"] >= services.config.server.max_in_flight:
            runtime["shed"] += 1
            return error_response(_OVERLOADED, rid)
        runtime["in_flight"] += 1
        try:
            try:
                body = await read_json(request, services.config.server.max_body_bytes)
                call = make_call(request, endpoint, body, rid)
            except GatewayError as err:
                return error_response(err, rid)
            chain: Handler = app[CHAIN]
            reply = await chain(call)
            return await app[WRITER].write(request, call, reply)
        finally:
            runtime["in_flight"] -= 1

    handler.__name__ = f"proxy_{endpoint.replace('.', '_')}"
    return handler


async def _accepted(call: Any) -> Any:
    from ..reply import Reply

    return Reply.json({})


async def list_models(request: web.Request) -> web.Response:
    """Aliases from config. When the pipeline has ``auth``, the same key check applies."""
    services = request.app[SERVICES]
    rid = request_id(request)
    auth = services.extras.get("auth.keys")
    if auth is not None:
        try:
            await auth(make_call(request, "models", {}, rid, validate=False), _accepted)
        except GatewayError as err:
            return error_response(err, rid)
    created = int(request.app[RUNTIME]["started_wall"])
    data = [
        {"id": alias, "object": "model", "created": created, "owned_by": "watchllm"}
        for alias in services.config.models
    ]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json", headers={"x-request-id": rid})


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    runtime = request.app[RUNTIME]
    components: dict[str, str] = {}
    failing: list[str] = []
    for name in ("store", "state"):
        comp = getattr(services, name)
        ping = getattr(comp, "ping", None)
        if ping is None:
            continue
        try:
            await ping()
            components[name] = "ok"
        except Exception as exc:  # report the component, never a stack trace
            components[name] = f"error: {type(exc).__name__}"
            failing.append(name)
    body = {
        "status": "ok" if not failing else "unavailable",
        "version": __version__,
        "timestamp": time.time(),
        "uptime_sec": round(time.monotonic() - runtime["started"], 3),
        "components": components,
    }
    if failing:
        body["failing"] = failing
    return web.Response(status=503 if failing else 200, body=orjson.dumps(body), content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    ok = runtime.get("ready", False) and not runtime.get("draining", False)
    return web.Response(status=200 if ok else 503, body=orjson.dumps({"ready": ok}), content_type="application/json")


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", _proxy(Endpoint.CHAT))
    app.router.add_post("/v1/completions", _proxy(Endpoint.COMPLETIONS))
    app.router.add_post("/v1/embeddings", _proxy(Endpoint.EMBEDDINGS))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
