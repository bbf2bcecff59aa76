"""/openapi.json describes every route the real app registers, and every $ref resolves."""
from __future__ import annotations

import json

from gateway.config import parse_config
from gateway.http.openapi import document
from gateway.server import build_app

CONFIG = {"providers": {"mock": {"type": "mock"}}, "models": {"mock": {"targets": ["mock/mock-1"]}}, "pipeline": [{"router": {}}]}


def _routes(app):
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or (route.resource.canonical if route.resource else None)
        if path is None or "prefix" in info:  # static directories
            continue
        yield route.method.lower(), path


def test_every_registered_route_is_described():
    app = build_app(parse_config(CONFIG, "<test>", env={}))
    doc = document()
    routes = list(_routes(app))
    assert ("post", "/v1/chat/completions") in routes and ("post", "/api/auth/login") in routes
    missing = [f"{m.upper()} {p}" for m, p in routes if m not in doc["paths"].get(p, {})]
    assert not missing, f"routes missing from gateway/http/openapi.py: {missing}"


def test_every_ref_resolves_and_every_operation_has_responses():
    doc = document()
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "{" + p["name"] + "}" in path


async def test_document_is_served(aiohttp_client):
    from aiohttp import web

    from gateway.http.openapi import setup_openapi

    app = web.Application()
    setup_openapi(app)
    client = await aiohttp_client(app)
    r = await client.get("/openapi.json")
    assert r.status == 200 and (await r.json())["openapi"].startswith("3.")
