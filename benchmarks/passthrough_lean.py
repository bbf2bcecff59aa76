"""A second reference: the leanest pass-through this stack allows (llhttp server + the gateway's h1 client).

    WATCHLLM_ALLOW_PRIVATE_UPSTREAMS=127.0.0.1 python -m benchmarks.passthrough_lean --port 9201 --upstream http://127.0.0.1:9100

The issue's ceiling is the bare *aiohttp* pass-through (``benchmarks/passthrough.py``). The gateway's
proxied routes no longer run on aiohttp's server (``gateway/http/fastpath.py``) and its upstream calls
use ``gateway/upstream/h1.py``, so against that ceiling part of its lead is the HTTP plumbing. This
proxy has the same plumbing and nothing else: a ``httptools`` protocol that reads a request, forwards
its body with the h1 client (pooled keep-alive) and writes the upstream's JSON back. The gateway's
ratio to it is what the middleware chain itself costs. JSON only (the streaming rows use the aiohttp
pass-through).
"""
from __future__ import annotations

import argparse
import asyncio
from collections import deque
from typing import Any

import httptools

from gateway.upstream.h1 import H1Client

__all__ = ["main"]


class _Proxy(asyncio.Protocol):
    def __init__(self, client: H1Client, upstream: str) -> None:
        self.client, self.upstream = client, upstream
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = b""
        self.queue: deque[tuple[bytes, bytes]] = deque()
        self.busy = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            return
        if not self.busy and self.queue:
            self._next()

    def on_message_begin(self) -> None:
        self.url, self.body = b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.queue.append((self.url, self.body))

    def _next(self) -> None:
        self.busy = True
        url, body = self.queue.popleft()
        asyncio.get_running_loop().create_task(self._forward(url, body))

    async def _forward(self, url: bytes, body: bytes) -> None:
        try:
            up = await self.client.request("POST", self.upstream + url.decode("latin-1"),
                                           headers={"Content-Type": "application/json"}, body=body)
            head = (b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (up.status, len(up.body)))
            out = head + up.body
        except Exception:
            out = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
        if not self.transport.is_closing():
            self.transport.write(out)
        self.busy = False
        if self.queue:
            self._next()


async def _serve(host: str, port: int, upstream: str) -> None:
    client = H1Client()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Proxy(client, upstream.rstrip("/")), host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="lean pass-through proxy (llhttp + h1 client), a benchmark reference")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9201)
    p.add_argument("--upstream", required=True)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args.host, args.port, args.upstream))


if __name__ == "__main__":
    main()
