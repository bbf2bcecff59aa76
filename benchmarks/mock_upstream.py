"""A fast OpenAI-compatible upstream for benchmarks: aiohttp + uvloop + orjson, no access log.

    python -m benchmarks.mock_upstream --port 9100 --latency-ms 0 --chunks 8 --chunk-delay-ms 0

Routes: ``POST /v1/chat/completions`` (JSON, or SSE when ``"stream": true``), ``POST /v1/completions``,
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /stats`` (requests served, so a benchmark can
prove a cache hit never reached the upstream) and ``GET /health``.

Per request, ``x-mock-latency-ms``, ``x-mock-chunks`` and ``x-mock-chunk-delay-ms`` headers override
the command-line knobs. The work per request is kept minimal (one ``orjson.loads`` for the ``stream``
flag and the model name, pre-built byte templates for the reply) so that the upstream is never what a
benchmark measures.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = ["MockOptions", "build_app", "start", "main"]

USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
REPLY = "This is the benchmark upstream answering with a short, fixed sentence."


@dataclass
class MockOptions:
    latency_ms: float = 0.0
    chunks: int = 8
    chunk_delay_ms: float = 0.0
    embedding_dim: int = 384
    reply: str = REPLY


STATS = web.AppKey("stats", dict)
OPTIONS = web.AppKey("options", MockOptions)


def _float_header(request: web.Request, name: str, default: float) -> float:
    value = request.headers.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        return default


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text='{"error":{"message":"invalid JSON","type":"invalid_request_error"}}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":{"message":"expected an object","type":"invalid_request_error"}}',
                                 content_type="application/json")
    return body


def _chat_json(model: str, reply: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": USAGE,
    })


def _split(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` near-equal, non-empty pieces (more pieces than characters: padded)."""
    n = max(1, n)
    step = len(text) / n
    parts = [text[round(i * step):round((i + 1) * step)] for i in range(n)]
    return [p or "." for p in parts]


async def chat(request: web.Request) -> web.StreamResponse:
    opts = request.app[OPTIONS]
    request.app[STATS]["requests"] += 1
    body = _parse(await request.read())
    model = str(body.get("model") or "mock-1")
    latency = _float_header(request, "x-mock-latency-ms", opts.latency_ms)
    if latency > 0:
        await asyncio.sleep(latency / 1000)
    if not body.get("stream"):
        return web.Response(body=_chat_json(model, opts.reply), content_type="application/json")

    request.app[STATS]["streams"] += 1
    chunks = int(_float_header(request, "x-mock-chunks", opts.chunks))
    delay = _float_header(request, "x-mock-chunk-delay-ms", opts.chunk_delay_ms) / 1000
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i, part in enumerate(_split(opts.reply, chunks)):
        if i and delay > 0:
            await asyncio.sleep(delay)
        delta = {"role": "assistant", "content": part} if i == 0 else {"content": part}
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n")
    tail = b"data: " + orjson.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n"
    if (body.get("stream_options") or {}).get("include_usage"):
        tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": USAGE}) + b"\n\n"
    await resp.write(tail + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def completions(request: web.Request) -> web.Response:
    opts = request.app[OPTIONS]
    request.app[STATS]["requests"] += 1
    body = _parse(await request.read())
    latency = _float_header(request, "x-mock-latency-ms", opts.latency_ms)
    if latency > 0:
        await asyncio.sleep(latency / 1000)
    return web.Response(body=orjson.dumps({
        "id": "cmpl-bench", "object": "text_completion", "created": int(time.time()), "model": body.get("model") or "mock-1",
        "choices": [{"index": 0, "text": opts.reply, "finish_reason": "stop", "logprobs": None}], "usage": USAGE,
    }), content_type="application/json")


def _vector(text: str, dim: int) -> list[float]:
    """Deterministic unit vector from the text's hash: same input, same embedding."""
    seed = hashlib.blake2b(text.encode(), digest_size=32).digest()
    raw = (seed * (dim * 4 // len(seed) + 1))[: dim * 4]
    vals = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dim}I", raw)]
    norm = sum(v * v for v in vals) ** 0.5 or 1.0
    return [v / norm for v in vals]


async def embeddings(request: web.Request) -> web.Response:
    opts = request.app[OPTIONS]
    request.app[STATS]["requests"] += 1
    body = _parse(await request.read())
    inputs = body.get("input", "")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = [{"object": "embedding", "index": i, "embedding": _vector(str(x), opts.embedding_dim)} for i, x in enumerate(items)]
    tokens = sum(max(1, len(str(x)) // 4) for x in items)
    return web.Response(body=orjson.dumps({
        "object": "list", "data": data, "model": body.get("model") or "mock-embed",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }), content_type="application/json")


async def models(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "bench"} for m in ("mock-1", "mock-embed")
    ]}), content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[STATS]), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def build_app(options: MockOptions | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[OPTIONS] = options or MockOptions()
    app[STATS] = {"requests": 0, "streams": 0}
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    return app


async def start(options: MockOptions | None = None, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start in the running loop (tests); returns the runner (call ``cleanup()``) and the bound port."""
    runner = web.AppRunner(build_app(options), access_log=None, handler_cancellation=True)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock, backlog=2048)
    await site.start()
    return runner, sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before the answer or the first chunk")
    p.add_argument("--chunks", type=int, default=8, help="content chunks per streamed answer")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between two chunks")
    p.add_argument("--embedding-dim", type=int, default=384)
    args = p.parse_args(argv)
    opts = MockOptions(latency_ms=args.latency_ms, chunks=args.chunks, chunk_delay_ms=args.chunk_delay_ms,
                       embedding_dim=args.embedding_dim)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(f"mock upstream on http://{args.host}:{args.port}/v1 (pid {os.getpid()}) {opts}", flush=True)
    web.run_app(build_app(opts), host=args.host, port=args.port, access_log=None, print=None,
                handler_cancellation=True, backlog=2048)


if __name__ == "__main__":
    main()
