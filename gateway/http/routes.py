"""OpenAI-compatible routes: parse once into a Call, run the chain, write the Reply."""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import orjson
from aiohttp import web

from .. import __version__
from ..call import Endpoint
from ..errors import GatewayError
from ..pipeline import Handler
from .keys import CHAIN, RUNTIME, SERVICES, WRITER
from .request import build_call, make_call, parse_json, read_body, request_id, rid_from
from .writer import AiohttpSink, Sink

__all__ = ["setup_routes", "error_response", "error_headers", "send_error", "run_call", "OVERLOADED", "PROXY_ROUTES"]

log = logging.getLogger("watchllm.http")


def error_headers(err: GatewayError, rid: str | None = None) -> dict[str, str]:
    headers = dict(err.headers)
    if rid:
        headers["x-request-id"] = rid
    headers["Content-Type"] = "application/json"
    return headers


def send_error(sink: Sink, err: GatewayError, rid: str) -> Any:
    """``err`` as an OpenAI-style error body, through either HTTP front."""
    return sink.send(err.status, error_headers(err, rid), orjson.dumps(err.body()))


def error_response(err: GatewayError, rid: str | None = None) -> web.Response:
    return web.Response(status=err.status, body=orjson.dumps(err.body()), headers=error_headers(err, rid))


OVERLOADED = GatewayError("service_unavailable", "the gateway is at capacity; retry shortly", headers={"Retry-After": "1"})


def _proxy(endpoint: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        app = request.app  # a property chain in aiohttp: looked up once
        services = app[SERVICES]
        runtime = app[RUNTIME]
        headers = request.headers
        rid = rid_from(headers)
        # Load shedding: past server.max_in_flight the excess is refused at once, before its body is read,
        # so admitted requests keep their latency and memory stays bounded.
        if runtime["in_flight"] >= services.config.server.max_in_flight:
            runtime["shed"] += 1
            return error_response(OVERLOADED, rid)
        runtime["in_flight"] += 1
        try:
            try:
                buf = await read_body(request, services.config.server.max_body_bytes)
            except GatewayError as err:
                return error_response(err, rid)
            return await run_call(app, endpoint, buf, headers, request.remote or "", rid, AiohttpSink(request))
        finally:
            runtime["in_flight"] -= 1

    handler.__name__ = f"proxy_{endpoint.replace('.', '_')}"
    return handler


async def run_call(app: web.Application, endpoint: str, buf: bytes | bytearray, headers: Mapping[str, str],
                   client_ip: str, rid: str, sink: Sink) -> Any:
    """Parse the body into a Call, run the chain, write the Reply to ``sink`` (both HTTP fronts)."""
    try:
        call = build_call(headers, client_ip, endpoint, parse_json(buf), rid)
    except GatewayError as err:
        return send_error(sink, err, rid)
    chain: Handler = app[CHAIN]
    reply = await chain(call)
    return await app[WRITER].write(sink, call, reply)


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


# The proxied routes (POST); the lean front (fastpath.py) serves the same paths with ``run_call``.
PROXY_ROUTES = {"/v1/chat/completions": Endpoint.CHAT, "/v1/completions": Endpoint.COMPLETIONS, "/v1/embeddings": Endpoint.EMBEDDINGS}


def setup_routes(app: web.Application) -> None:
    for path, endpoint in PROXY_ROUTES.items():
        app.router.add_post(path, _proxy(endpoint))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
