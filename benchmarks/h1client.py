"""A lean HTTP/1.1 keep-alive sender for the open-loop load generator (JSON requests, whole answers).

Why: the open loop's client shares a core with the mock upstream, and everything it spends there shows
up in the latencies it measures, direct's included. aiohttp's client cost ~206 us of CPU per request at
2,700 requests/s (56% of that core); direct's p99 was 6.2 ms in one run. This sender writes prebuilt
request bytes on pooled keep-alive connections, parses answers with llhttp (``httptools``) and records
each latency in the protocol's callback: no Task, no Future per request. Streams still go through
aiohttp (TTFT and gaps need line-by-line reading; they run at 100 streams/s).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable
from urllib.parse import urlsplit

import httptools

__all__ = ["Sender", "request", "request_head"]

Done = Callable[[float, int], None]              # (intended start, status code)
Failed = Callable[[BaseException], None]


def request_head(url: str, headers: dict[str, str]) -> bytes:
    """The request's bytes up to the Content-Length value: a POST of JSON to ``url``."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
    if not any(k.lower() == "content-type" for k in headers):
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")


def request(head: bytes, body: bytes) -> bytes:
    return b"%s%d\r\n\r\n%s" % (head, len(body), body)


class _Conn(asyncio.Protocol):
    def __init__(self, sender: "Sender") -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.start: float | None = None  # the request on the wire: its intended send time
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, start: float) -> None:
        assert self.transport is not None
        self.start = start
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._lost(ConnectionError(f"bad response: {exc}"))

    def on_message_complete(self) -> None:
        start, self.start = self.start, None
        keep = self.parser.should_keep_alive()
        if start is not None:
            self.sender._answered(start, self.parser.get_status_code())
        if keep:
            self.sender._free(self)
        else:
            self._lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc or ConnectionResetError("connection closed by the server"))

    def _lost(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        start, self.start = self.start, None
        self.sender._gone(exc if start is not None else None)


class Sender:
    """Requests to one host on up to ``limit`` keep-alive connections. ``send`` never waits: with no free
    connection the request queues (that wait is part of its latency) and, below the limit, a new
    connection is opened for it. ``on_done(start, status)`` is called when an answer has been read whole,
    ``on_error(exc)`` when a request fails."""

    def __init__(self, url: str, limit: int, on_done: Done, on_error: Failed) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError("the lean sender speaks plain http only")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.limit = limit
        self.on_done = on_done
        self.on_error = on_error
        self.count = 0                     # connections open or being opened
        self.idle: list[_Conn] = []
        self.queued: deque[tuple[bytes, float]] = deque()
        self.outstanding = 0               # requests sent or queued, not yet answered or failed
        self._idle_event = asyncio.Event()
        self._idle_event.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, data: bytes, start: float) -> None:
        self.outstanding += 1
        self._idle_event.clear()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.send(data, start)
                return
        self.queued.append((data, start))
        self._grow()

    def _grow(self) -> None:
        if self.count < self.limit and len(self.queued) > 0:
            self.count += 1
            task = asyncio.get_running_loop().create_task(self._connect())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        try:
            _, conn = await asyncio.get_running_loop().create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError as exc:
            self.count -= 1
            if self.queued:  # the request that asked for this connection fails
                self.queued.popleft()
                self._settle(exc)
            return
        self._free(conn)

    def _free(self, conn: _Conn) -> None:
        if self.queued:
            data, start = self.queued.popleft()
            conn.send(data, start)
        else:
            self.idle.append(conn)

    def _answered(self, start: float, status: int) -> None:
        self.on_done(start, status)
        self._settle(None)

    def _gone(self, exc: BaseException | None) -> None:
        self.count -= 1
        if exc is not None:
            self._settle(exc)
        self._grow()

    def _settle(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.on_error(exc)
        self.outstanding -= 1
        if self.outstanding <= 0:
            self._idle_event.set()

    async def drain(self, timeout: float) -> int:
        """Wait for every request to be answered; the number still unanswered after ``timeout``."""
        try:
            await asyncio.wait_for(self._idle_event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.outstanding

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
