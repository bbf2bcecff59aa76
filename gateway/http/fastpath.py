"""The lean HTTP/1.1 front of the proxied routes; every other request is served by aiohttp.

Why: aiohttp's server costs ~53 µs of CPU per request on the benchmark box before a handler
runs (a bare ``web.Server`` handler: 18.7k req/s on one core), against ~10 µs for an asyncio
protocol on ``httptools`` (llhttp, the parser uvloop and uvicorn use: 104k req/s). For an exact
cache hit that is a third of the request. So ``POST /v1/chat/completions``, ``/v1/completions``
and ``/v1/embeddings`` over HTTP/1.1 are parsed here and run through the same ``run_call`` as
the aiohttp route; the response is written to the transport in one piece (JSON) or as chunks (SSE).

Everything else goes to aiohttp's own protocol (``server()``, the guarded ``RequestHandler``):

* The first request of a connection is not a proxied route (admin API, /metrics, /health, HTTP/1.0,
  ``Expect``, ``Upgrade``): the connection is handed over whole. aiohttp gets the bytes received so
  far and becomes the transport's protocol; this module is out of the way.
* A later request on a connection that started with proxied ones (an SDK listing models on its
  pooled connection): from that request on, each request is re-serialised from the parsed parts
  (same request line and headers, body re-chunked when it came chunked) and fed to aiohttp, after
  the responses already in progress, in order.

Kept from the aiohttp front: llhttp's strict parsing (400 and close on a malformed request), limits on
the request line (414), header size and count (431) and body (413, before the body when
Content-Length says so), the request-header deadline (slowloris), the keep-alive timeout (which also
ends a request body that stops arriving),
pipelining in order, cancellation of the handler when the client goes away, graceful shutdown
(``Server.pre_shutdown`` / ``shutdown``), OpenAI-style error bodies, load shedding.
"""
from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from email.utils import formatdate
from typing import Any, Callable

import httptools
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import GatewayError
from .keys import RUNTIME, SERVICES
from .request import check_type, rid_from, too_large
from .lapse import Lapse
from .routes import OVERLOADED, PROXY_ROUTES, error_headers, run_call, send_error

__all__ = ["FastProtocol", "FrontLimits"]

log = logging.getLogger("watchllm.http")
access_log = logging.getLogger("watchllm.access")

_HOT = {path.encode(): endpoint for path, endpoint in PROXY_ROUTES.items()}
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_MAX_PIPELINED = 16           # parsed requests waiting behind the one in progress before reading pauses
_RELAY = object()             # queue marker: from here on the connection's requests go to aiohttp


class FrontLimits:
    __slots__ = ("max_line", "max_field", "max_headers", "max_head", "max_body", "header_timeout", "keepalive", "access_log")

    def __init__(self, *, max_line: int, max_field: int, max_headers: int, max_body: int, header_timeout: float,
                 keepalive: float, access_log: bool = False) -> None:
        self.max_line, self.max_field, self.max_headers, self.max_body = max_line, max_field, max_headers, max_body
        # llhttp (through httptools) buffers a header until it is complete: the head as a whole is bounded too.
        self.max_head = 2 * (max_line + max_field)
        self.header_timeout, self.keepalive, self.access_log = header_timeout, keepalive, access_log


class _Abort(Exception):
    """Raised in a parser callback: stop parsing this connection (a reply is queued)."""


class _Handoff(Exception):
    """Raised in a parser callback: the connection's first request is aiohttp's."""


class _Request:
    __slots__ = ("endpoint", "method", "path", "headers", "body", "keep_alive", "error", "status")

    def __init__(self, endpoint: str, method: bytes, path: bytes, headers: CIMultiDictProxy[str], keep_alive: bool) -> None:
        self.endpoint, self.method, self.path, self.headers, self.keep_alive = endpoint, method, path, headers, keep_alive
        self.body: bytes | bytearray = b""
        self.error: GatewayError | None = None
        self.status = 0


_date = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True)
    return _date[1]


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


def _head(status: int, headers: dict[str, str], length: int | None, close: bool) -> bytes:
    """Status line and headers. Refuses CR/LF in a value (header injection) with ValueError.

    Framing headers are this module's to write; a middleware's own copies are dropped.
    """
    if not _FRAMING.isdisjoint(map(str.lower, headers)):
        headers = {k: v for k, v in headers.items() if k.lower() not in _FRAMING}
    values = "".join(headers.values())
    if "\n" in values or "\r" in values:
        raise ValueError("newline in a response header value")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n")
    lines.append(f"Date: {_http_date()}\r\nServer: watchllm\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def _error_bytes(err: GatewayError, *, close: bool = True) -> bytes:
    body = orjson.dumps(err.body())
    return _head(err.status, error_headers(err, rid_from({})), len(body), close) + body


class _Sink:
    """A response on a FastProtocol connection (see writer.Sink)."""

    __slots__ = ("proto", "req")

    def __init__(self, proto: "FastProtocol", req: _Request) -> None:
        self.proto, self.req = proto, req

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.req.status = status
        self.proto.write(_head(status, headers, len(body), self.proto.closing_after(self.req)) + body)

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.req.status = status
        self.proto.write(_head(status, headers, None, self.proto.closing_after(self.req)))

    async def write(self, data: bytes) -> None:
        proto = self.proto
        proto.write(b"%x\r\n%b\r\n" % (len(data), data))
        if proto.write_paused:
            await proto.drain()

    async def end(self) -> None:
        self.proto.write(b"0\r\n\r\n")

    def done(self) -> None:
        return None


class FastProtocol(asyncio.Protocol):
    """One client connection: parse with llhttp, serve proxied routes, hand the rest to aiohttp."""

    def __init__(self, server: Any, app: Any, limits: FrontLimits, delegate: Callable[[], asyncio.Protocol]) -> None:
        self._server = server            # aiohttp's web_server.Server: connection registry for shutdown
        self._app = app
        self._limits = limits
        self._delegate_factory = delegate
        self._loop = asyncio.get_running_loop()
        self._task_handler = None        # read by Server.connection_lost
        self.transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._peer = ""
        self._raw: bytearray | None = bytearray()  # the connection's bytes until its first request is decided
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._head_bytes = 0
        self._req: _Request | None = None
        self._queue: deque[Any] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closing = False            # no new requests: close once the current one is answered
        self._lost = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._relay = False              # requests from here on are re-serialised for aiohttp
        self._relay_buf: list[bytes] | None = None
        self._relay_chunked = False
        self._delegate: Any = None
        lim, loop = self._limits, self._loop
        # Request headers still incomplete header_timeout after their first byte (or after connecting: a
        # connection that never sends a request is dropped too); idle between requests; a body that stops.
        self._header_lapse = Lapse(loop, lim.header_timeout, self._served_here, self._drop)
        self._idle_lapse = Lapse(loop, lim.keepalive, lambda: self._served_here() and self._task is None, self._drop)
        self._body_lapse = Lapse(loop, lim.keepalive, lambda: self._served_here() and self._req is not None, self._drop)

    # -- connection events ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) and peer else ""
        self._parser = httptools.HttpRequestParser(self)
        self._server.connection_made(self, transport)
        self._header_lapse.touch()

    def data_received(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw += data
        if self._in_head:
            self._head_bytes += len(data)
        self._idle_lapse.clear()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Handoff):
                self._hand_over()
                return
            if not isinstance(exc.__context__, _Abort):
                log.error("fast front: parser callback failed", exc_info=exc.__context__)
                self._reject(GatewayError("internal_error", "internal error"))
        except httptools.HttpParserUpgrade:
            if self._raw is not None:
                self._hand_over()
                return
            self._reject(GatewayError("invalid_request", "protocol upgrade is not supported here"))
        except httptools.HttpParserError as exc:
            self._reject(GatewayError("invalid_request", f"malformed HTTP request: {exc}"))
        else:
            if self._in_head and self._head_bytes > self._limits.max_head:
                self._reject(GatewayError("invalid_request", f"request headers exceed {self._limits.max_head} bytes", status=431))
        if self._req is not None:  # a body in progress, and not stalled: bytes of it came just now
            self._body_lapse.touch()
        if len(self._queue) >= _MAX_PIPELINED and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        if self._task is None:
            self._next()

    def eof_received(self) -> bool | None:
        if self._delegate is not None:
            return self._delegate.eof_received()  # type: ignore[no-any-return]
        return None  # the transport closes; a request in progress is cancelled (as aiohttp does)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._delegate is not None:
            self._delegate.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None
        if self._delegate is not None:
            self._delegate.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._stop_timers()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("client disconnected"))
        if self._task is not None:
            self._task.cancel()  # a client that disconnects cancels its upstream call (handler_cancellation)
        if self._delegate is not None:
            self._delegate.connection_lost(exc)
        else:
            self._server.connection_lost(self, exc)

    # -- writing -----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        t = self.transport
        if self._lost or t is None or t.is_closing():
            raise ConnectionResetError("client disconnected")
        t.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("client disconnected")
        if self._drain is None:
            self._drain = self._loop.create_future()
        await self._drain

    def closing_after(self, req: _Request) -> bool:
        return self._closing or not req.keep_alive

    # -- parser callbacks (httptools) ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = []
        self._in_head = True
        self._head_bytes = 0
        if self._header_lapse.since is None:
            self._header_lapse.touch()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_line:
            self._fail(GatewayError("invalid_request", f"request line exceeds {self._limits.max_line} bytes", status=414))

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._fields
        fields.append((name, value))
        lim = self._limits
        if len(value) > lim.max_field or len(name) > lim.max_field:
            self._fail(GatewayError("invalid_request", f"a request header exceeds {lim.max_field} bytes", status=431))
        if len(fields) > lim.max_headers:
            self._fail(GatewayError("invalid_request", f"more than {lim.max_headers} request headers", status=431))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._header_lapse.clear()
        if self._relay:
            self._relay_head()
            return
        parser = self._parser
        url = self._url
        path = url.partition(b"?")[0]
        endpoint = _HOT.get(path)
        if (endpoint is None or parser.get_method() != b"POST" or parser.get_http_version() != "1.1"
                or parser.should_upgrade() or any(n.lower() == b"expect" for n, _ in self._fields)):
            if self._raw is not None:
                raise _Handoff()
            self._relay = True
            self._relay_buf = []
            self._queue.append(_RELAY)
            self._relay_head()
            return
        self._raw = None
        headers = CIMultiDictProxy(CIMultiDict([(n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in self._fields]))
        req = _Request(endpoint, b"POST", path, headers, parser.should_keep_alive())
        self._req = req
        length = headers.get("Content-Length")
        max_body = self._limits.max_body
        if length is not None and int(length) > max_body:
            self._fail(too_large(int(length), max_body))
        try:
            check_type(headers)
        except GatewayError as err:
            req.error = err  # answered once the body is in, which is not kept

    def on_body(self, body: bytes) -> None:
        if self._relay:
            self._relay_send(b"%x\r\n%b\r\n" % (len(body), body) if self._relay_chunked else body)
            return
        req = self._req
        if req is None or req.error is not None:
            return
        if req.body:
            if isinstance(req.body, bytes):
                req.body = bytearray(req.body)
            req.body += body
        else:
            req.body = body
        if len(req.body) > self._limits.max_body:
            self._fail(GatewayError("payload_too_large", f"request body exceeds the limit of {self._limits.max_body} bytes"))

    def on_message_complete(self) -> None:
        if self._relay:
            if self._relay_chunked:
                self._relay_send(b"0\r\n\r\n")
            return
        req, self._req = self._req, None
        if req is not None:
            self._queue.append(req)

    # -- requests ------------------------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next queued request (one at a time, so responses leave in order)."""
        while self._task is None and self._queue and not self._lost:
            item = self._queue.popleft()
            if self._reading_paused and len(self._queue) < _MAX_PIPELINED // 2 and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            if item is _RELAY:
                self._start_relay()
                return
            if isinstance(item, bytes):  # a refusal: the connection ends with it
                if self.transport is not None:
                    self.transport.write(item)
                    self.transport.close()
                self._queue.clear()
                return
            self._task = self._loop.create_task(self._serve(item))
        if self._task is None and not self._queue and not self._lost and not self._relay:
            if self._closing and self.transport is not None:
                self.transport.close()
            else:
                self._idle_lapse.touch()

    async def _serve(self, req: _Request) -> None:
        sink = _Sink(self, req)
        app = self._app
        runtime = app[RUNTIME]
        services = app[SERVICES]
        rid = rid_from(req.headers)
        try:
            if req.error is not None:
                send_error(sink, req.error, rid)
            elif runtime["in_flight"] >= services.config.server.max_in_flight:
                runtime["shed"] += 1
                send_error(sink, OVERLOADED, rid)
            else:
                runtime["in_flight"] += 1
                try:
                    await run_call(app, req.endpoint, req.body, req.headers, self._peer, rid, sink)
                finally:
                    runtime["in_flight"] -= 1
        except asyncio.CancelledError:
            pass  # the client went away (or shutdown gave up waiting): nothing more to write
        except ConnectionResetError:
            pass
        except Exception as exc:
            log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
            if req.status == 0 and not self._lost:
                err = GatewayError("internal_error", f"internal error (request id {rid})")
                send_error(sink, err, rid)
            elif self.transport is not None:
                self.transport.close()  # a response already begun cannot be finished cleanly
        finally:
            self._task = None
            if self._limits.access_log:
                access_log.info('%s "%s %s HTTP/1.1" %d', self._peer, req.method.decode(), req.path.decode("latin-1"), req.status)
            if not self._lost:
                if self.closing_after(req):
                    if self.transport is not None:
                        self.transport.close()
                else:
                    self._next()

    def _fail(self, err: GatewayError) -> None:
        """From a parser callback: answer ``err`` after the requests before it, then close."""
        self._reject(err)
        raise _Abort()

    def _reject(self, err: GatewayError) -> None:
        self._req = None
        self._in_head = False
        self._header_lapse.clear()
        if self._relay:
            if self._delegate is None:  # aiohttp has not started: answer in order ourselves
                self._relay = False
                self._relay_buf = None
                while self._queue and self._queue[-1] is _RELAY:
                    self._queue.pop()
            else:
                if self.transport is not None:
                    self.transport.close()
                return
        self._queue.append(_error_bytes(err))
        self._parser = _Closed()

    # -- handing requests to aiohttp --------------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """The first request is not a proxied route: aiohttp's protocol takes the connection whole."""
        raw, self._raw = bytes(self._raw or b""), None
        self._stop_timers()
        transport = self.transport
        assert transport is not None
        self._server.connection_lost(self, None)
        handler = self._delegate_factory()
        self._lost = True  # this protocol no longer sees the connection
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(raw)

    def _relay_head(self) -> None:
        parser = self._parser
        self._relay_chunked = any(n.lower() == b"transfer-encoding" for n, _ in self._fields)
        head = [parser.get_method(), b" ", self._url, b" HTTP/", parser.get_http_version().encode(), b"\r\n"]
        for n, v in self._fields:
            head += (n, b": ", v, b"\r\n")
        head.append(b"\r\n")
        self._relay_send(b"".join(head))

    def _relay_send(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.data_received(data)
        elif self._relay_buf is not None:
            self._relay_buf.append(data)

    def _start_relay(self) -> None:
        """Requests before this one are answered: aiohttp serves the connection's requests from now on."""
        self._stop_timers()
        transport = self.transport
        assert transport is not None
        self._server.connection_lost(self, None)
        handler = self._delegate_factory()
        handler.connection_made(transport)
        if self.write_paused:
            handler.pause_writing()
        self._delegate = handler
        pending, self._relay_buf = b"".join(self._relay_buf or ()), None
        if pending:
            handler.data_received(pending)

    # -- timers ----------------------------------------------------------------------------------------------------

    def _stop_timers(self) -> None:
        for lapse in (self._header_lapse, self._idle_lapse, self._body_lapse):
            lapse.cancel()

    def _served_here(self) -> bool:
        return not self._lost and self._delegate is None

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- graceful shutdown (aiohttp's Server.pre_shutdown / shutdown) -----------------------------------------------------

    def close(self) -> None:
        self._closing = True
        if self._task is None and not self._queue and self.transport is not None:
            self.transport.close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        self._closing = True
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=timeout)
        if self.transport is not None and not self._lost:
            self.transport.close()


class _Closed:
    """Stands in for the parser once the connection is refused: the rest of its input is ignored."""

    def feed_data(self, data: bytes) -> None:
        return None
