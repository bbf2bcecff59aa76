"""The HTTP error boundary: every failure a client sees is an OpenAI-style body, with no middleware."""
from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import GatewayError
from gateway.http.errors import install_error_boundary

SECRET = "sk-live-do-not-leak-1234567890"


def _app() -> web.Application:
    app = web.Application()
    install_error_boundary(app)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(f"upstream key {SECRET} rejected")

    async def refused(request: web.Request) -> web.Response:
        raise GatewayError("rate_limit_exceeded", "slow down", headers={"Retry-After": "3"})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def too_big(request: web.Request) -> web.Response:
        raise web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20)

    app.router.add_get("/boom", boom)
    app.router.add_get("/refused", refused)
    app.router.add_get("/moved", moved)
    app.router.add_post("/big", too_big)
    return app


async def test_no_aiohttp_middleware_runs_per_request():
    app = _app()
    assert list(app.middlewares) == []  # the boundary wraps the app's handler instead (3% of a cache hit)


async def test_an_unexpected_exception_is_a_500_without_trace_or_secret(aiohttp_client, caplog):
    client = await aiohttp_client(_app())
    with caplog.at_level(logging.ERROR, logger="watchllm.http"):
        resp = await client.get("/boom", headers={"x-request-id": "req-boom-1"})
        text = await resp.text()
    assert resp.status == 500
    body = await resp.json()
    assert body["error"]["code"] == "internal_error" and "req-boom-1" in body["error"]["message"]
    assert SECRET not in text and "Traceback" not in text and "RuntimeError" not in text
    assert resp.headers["x-request-id"] == "req-boom-1"
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)  # the trace is server-side


async def test_gateway_errors_keep_their_status_code_and_headers(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/refused")
    assert resp.status == 429 and resp.headers["Retry-After"] == "3"
    assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"


async def test_unknown_route_wrong_method_and_http_errors_are_openai_style(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.post("/boom")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"
    resp = await client.post("/big", data=b"x")
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"


async def test_a_redirect_is_not_turned_into_an_error(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/moved", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/elsewhere"
