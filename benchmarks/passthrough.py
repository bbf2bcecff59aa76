"""The reference ceiling: a bare aiohttp + uvloop pass-through proxy.

    python -m benchmarks.passthrough --port 9200 --upstream http://127.0.0.1:9100

It does the least a proxy can do and still be a fair comparison with the gateway: read the body,
forward it with one pooled ``ClientSession`` (keep-alive, no per-request connection), and return
the upstream's reply; a ``text/event-stream`` reply is relayed chunk by chunk as bytes arrive
(``iter_any``), never buffered. No parsing, no auth, no logging: every cost the gateway adds on
top of this is its own.
"""
from __future__ import annotations

import argparse
import os
import socket

import aiohttp
from aiohttp import web

__all__ = ["build_app", "start", "main"]

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


async def proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.rel_url.raw_path_qs
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    for name in ("x-mock-latency-ms", "x-mock-chunks", "x-mock-chunk-delay-ms"):
        if name in request.headers:
            headers[name] = request.headers[name]
    async with session.request(request.method, url, data=body if body else None, headers=headers) as up:
        ctype = up.headers.get("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            return web.Response(body=await up.read(), status=up.status, headers={"Content-Type": ctype or "application/json"})
        resp = web.StreamResponse(status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP})
        await resp.prepare(request)
        async for data in up.content.iter_any():
            await resp.write(data)
        await resp.write_eof()
        return resp


async def _session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=60)
    app[SESSION] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                         auto_decompress=False)
    yield
    await app[SESSION].close()


def build_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def start(upstream: str, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start in the running loop (tests); returns the runner (call ``cleanup()``) and the bound port."""
    runner = web.AppRunner(build_app(upstream), access_log=None, handler_cancellation=True)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock, backlog=2048).start()
    return runner, sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="bare aiohttp pass-through proxy (benchmark ceiling)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9100 (paths are kept as sent)")
    args = p.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(f"passthrough on http://{args.host}:{args.port} -> {args.upstream} (pid {os.getpid()})", flush=True)
    web.run_app(build_app(args.upstream), host=args.host, port=args.port, access_log=None, print=None,
                handler_cancellation=True, backlog=2048)


if __name__ == "__main__":
    main()
