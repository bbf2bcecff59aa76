"""A request-header deadline, which aiohttp lacks (slowloris protection).

aiohttp 3.14 closes a connection that sends nothing for ``keepalive_timeout``, but a
client that dribbles one header byte at a time is served whenever it finishes. Here a
connection whose request headers are still incomplete ``header_timeout`` seconds after
the first byte of the request (or after the connection opened) is closed. Bytes of a
request body, and idle keep-alive between requests, do not count.
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from .fastpath import FastProtocol, FrontLimits

__all__ = ["GuardedRunner", "FrontLimits"]


class _GuardedHandler(RequestHandler):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._partial_since: float | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, since: float) -> None:
        self._partial_since = since
        if self._deadline is None:
            self._deadline = self._loop.call_at(since + self._header_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self._deadline = None
        since = self._partial_since
        if since is None or self._force_close:
            return
        due = since + self._header_timeout
        if self._loop.time() >= due:
            self.force_close()
            if self.transport is not None:
                self.transport.close()
        else:
            self._deadline = self._loop.call_at(due, self._check_deadline)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._loop.time())  # a connection that never sends a request is dropped too

    def data_received(self, data: bytes) -> None:
        waiting = self._partial_since is not None or (self._waiter is not None and not self._waiter.done())
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._partial_since = None  # headers complete; body bytes and the handler are not timed here
        elif waiting and self._partial_since is None:
            self._arm(self._loop.time())

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)


class _GuardedServer(Server):
    header_timeout: float = 10.0
    fast: tuple[web.Application, FrontLimits] | None = None

    def handler(self) -> RequestHandler:
        if self.header_timeout > 0:
            return _GuardedHandler(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)
        return RequestHandler(self, loop=self._loop, **self._kwargs)

    def __call__(self) -> asyncio.Protocol:
        if self.fast is not None:
            return FastProtocol(self, self.fast[0], self.fast[1], self.handler)
        return self.handler()


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections get a request-header deadline, and the lean front (fastpath.py)."""

    def __init__(self, app: web.Application, *, header_timeout: float, fast: FrontLimits | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout
        self._fast = fast

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same state, overridden factory methods
        server.header_timeout = self._header_timeout  # type: ignore[attr-defined]
        if self._fast is not None:
            server.fast = (self._app, self._fast)  # type: ignore[attr-defined]
        return server
