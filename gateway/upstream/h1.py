"""H1Client: a lean HTTP/1.1 keep-alive client for the hot path (non-streamed provider calls).

Why it exists: profiling the gateway under load (py-spy and a client micro-benchmark against the
benchmark's mock upstream, same machine, same run) showed aiohttp's ``ClientSession`` costing
about 280 µs of CPU per small JSON POST (URL and header objects, cookie jar, timer contexts,
payload registry, the response object), against about 65 µs for an ``asyncio.Protocol`` fed
to llhttp (``httptools``). On a proxied request that is a third of the gateway's CPU. Streams
keep using the shared aiohttp session: they live long, so a per-request cost matters less.

What it does, and no more:

* ``http`` and ``https`` (TLS through the event loop, the default SSL context, SNI and host
  name checking), one pool of idle keep-alive connections per origin (LIFO, bounded, idle
  connections older than ``keepalive_timeout`` are closed, not reused);
* responses with ``Content-Length``, chunked or read-to-close bodies; ``gzip``/``deflate``
  bodies are decoded (we never ask for them); the body size is capped (``max_body``);
* a total deadline per request (connect included) and a connect timeout;
* SSRF: host names and IP literals are resolved through the netguard's ``GuardedResolver``
  (the same one the aiohttp session uses), so a name or literal that is not public is refused
  at connect time unless allow-listed; answers are cached for ``dns_ttl`` seconds;
* a request whose reused keep-alive connection turns out closed by the server before any
  byte of the answer arrived is sent once more on a new connection (the keep-alive race);
* header injection is refused: a name or value with CR, LF or NUL raises ``ValueError``.

No redirects (never followed, like the aiohttp calls), no cookies, no proxies (the shared
session ignores proxy variables too). Connection failures raise :class:`UpstreamError`,
an exceeded deadline raises ``TimeoutError``.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import time
import zlib
from typing import Any, Mapping
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

__all__ = ["H1Client", "H1Response", "UpstreamError"]

_SKIPPED = frozenset(("host", "content-length", "transfer-encoding", "connection", "accept-encoding", "user-agent"))


def _forbidden(text: str) -> bool:
    """CR, LF or NUL in a header: three C scans (``str.translate`` with a table raised and caught
    a KeyError per character, ~4% of a proxied request's CPU)."""
    return "\r" in text or "\n" in text or "\0" in text


class UpstreamError(Exception):
    """The upstream could not be reached, or the connection broke before the answer ended."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent  # False: nothing of the answer arrived (safe to resend on a new connection)


class H1Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Origin:
    __slots__ = ("key", "scheme", "host", "port", "host_header", "ssl")

    def __init__(self, scheme: str, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        self.scheme, self.host, self.port, self.ssl = scheme, host, port, ssl_ctx
        default = 443 if scheme == "https" else 80
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if port == default else f"{shown}:{port}"
        self.key = (scheme, host, port)


class _Conn(asyncio.Protocol):
    """One connection; at most one request in flight on it (no pipelining)."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.served = 0
        self.parser = httptools.HttpResponseParser(self)  # llhttp parses one answer after another
        self._reset(None)

    def _reset(self, waiter: asyncio.Future[H1Response] | None) -> None:
        self.waiter = waiter
        self.status = 0
        self.raw_headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.got_bytes = False
        self.keep_alive = False
        self.framed = False  # Content-Length or chunked: the end of the body is known

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid HTTP response from upstream: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is None or w.done():
            return
        if self.status and not self.framed:
            self.on_message_complete()  # read-to-close body: the close ends it
            return
        if not self.got_bytes:
            self._fail(UpstreamError("upstream closed the connection before answering", sent=False))
        else:
            self._fail(UpstreamError("upstream closed the connection in the middle of the answer"))

    # httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        for name, value in self.raw_headers:
            low = name.lower()
            if low == "content-length" or (low == "transfer-encoding" and "chunked" in value.lower()):
                self.framed = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(UpstreamError(f"upstream answer is larger than {self.max_body} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        self.keep_alive = self.parser.should_keep_alive() and not self.closed
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        headers: CIMultiDict[str] = CIMultiDict(self.raw_headers)
        enc = headers.get("content-encoding", "").strip().lower()
        if enc and enc != "identity":
            try:
                body = _decode(body, enc, self.max_body)
            except (ValueError, zlib.error) as exc:
                self._fail(UpstreamError(f"cannot decode the upstream answer ({enc}): {exc}"))
                return
        w.set_result(H1Response(self.status, headers, body))

    # ----------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _decode(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("gzip", "x-gzip", "deflate"):
        d = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error:
            if encoding != "deflate":
                raise
            out = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, limit + 1)  # raw deflate
        if len(out) > limit:
            raise ValueError(f"decoded answer is larger than {limit} bytes")
        return out
    raise ValueError("unsupported content-encoding")


class H1Client:
    def __init__(self, *, resolver: Any = None, max_idle_per_origin: int = 256, keepalive_timeout: float = 30.0,
                 max_body: int = 64 * 1024 * 1024, dns_ttl: float = 60.0, user_agent: str = "watchllm") -> None:
        self._resolver = resolver
        self.max_idle = max_idle_per_origin
        self.keepalive_timeout = keepalive_timeout
        self.max_body = max_body
        self.dns_ttl = dns_ttl
        self.user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._origins: dict[str, tuple[_Origin, str]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    @property
    def resolver(self) -> Any:
        if self._resolver is None:
            from ..netguard import GuardedResolver

            self._resolver = GuardedResolver()
        return self._resolver

    @resolver.setter
    def resolver(self, value: Any) -> None:
        self._resolver = value
        self._dns.clear()

    # public ----------------------------------------------------------------------------
    async def request(self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None = None,
                      timeout: float | None = None, connect_timeout: float | None = None) -> H1Response:
        """Send one request and read the whole answer. ``timeout`` bounds everything."""
        if self._closed:
            raise UpstreamError("the upstream client is closed", sent=False)
        origin, target = self._origin(url)
        head = self._head(method, target, origin, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for attempt in (0, 1):
            conn = self._take(origin.key, loop.time())
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, loop, deadline, connect_timeout)
            try:
                return await self._exchange(conn, head, body, loop, deadline, origin)
            except UpstreamError as exc:
                if attempt == 0 and reused and not exc.sent:
                    continue  # the keep-alive race: the server had closed the idle connection
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    # internals -------------------------------------------------------------------------
    def _origin(self, url: str) -> tuple[_Origin, str]:
        hit = self._origins.get(url)
        if hit is not None:
            return hit
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"unsupported upstream URL {url!r}", sent=False)
        if parts.username or parts.password:
            raise UpstreamError("upstream URL must not carry credentials", sent=False)
        port = parts.port or (443 if scheme == "https" else 80)
        ctx = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        origin = _Origin(scheme, parts.hostname, port, ctx)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if len(self._origins) < 1024:  # provider URLs are few and fixed; bound it anyway
            self._origins[url] = (origin, target)
        return origin, target

    def _head(self, method: str, target: str, origin: _Origin, headers: Mapping[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}", f"User-Agent: {self.user_agent}",
                 "Accept-Encoding: identity"]
        for name, value in headers.items():
            name, value = str(name), str(value)
            if _forbidden(name) or _forbidden(value) or ":" in name:
                raise ValueError(f"header {name!r} holds a forbidden character")
            if name.lower() in _SKIPPED:
                continue
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _take(self, key: tuple[str, str, int], now: float) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_timeout:
                conn.close()
                continue
            return conn
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Conn, now: float) -> None:
        idle = self._idle.setdefault(key, [])
        if conn.closed or not conn.keep_alive or self._closed or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        conn.waiter = None
        idle.append(conn)

    async def _addresses(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> list[tuple[int, str]]:
        key = (origin.host, origin.port)
        hit = self._dns.get(key)
        now = loop.time()
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            results = await self.resolver.resolve(origin.host, origin.port, socket.AF_UNSPEC)
        except OSError as exc:
            raise UpstreamError(f"cannot resolve {origin.host}: {exc}", sent=False) from None
        addrs = [(int(r["family"]), str(r["host"])) for r in results]
        if not addrs:
            raise UpstreamError(f"{origin.host} has no address", sent=False)
        if len(self._dns) > 1024:
            self._dns.clear()
        self._dns[key] = (now + self.dns_ttl, addrs)
        return addrs

    async def _connect(self, origin: _Origin, loop: asyncio.AbstractEventLoop, deadline: float | None,
                       connect_timeout: float | None) -> _Conn:
        addrs = await self._addresses(origin, loop)
        last: Exception | None = None
        for family, host in addrs:
            limit = connect_timeout
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                limit = left if limit is None else min(limit, left)
            try:
                async with asyncio.timeout(limit):
                    _, conn = await loop.create_connection(
                        lambda: _Conn(self.max_body), host, origin.port, family=family, ssl=origin.ssl,
                        server_hostname=origin.host if origin.ssl else None)
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    raise
                last = UpstreamError(f"connect to {origin.host}:{origin.port} timed out", sent=False)
                continue
            except (OSError, ssl.SSLError) as exc:
                last = exc
                continue
            sock = conn.transport.get_extra_info("socket") if conn.transport else None
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        if isinstance(last, UpstreamError):
            raise last
        raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {last}", sent=False)

    async def _exchange(self, conn: _Conn, head: bytes, body: bytes | None, loop: asyncio.AbstractEventLoop,
                        deadline: float | None, origin: _Origin) -> H1Response:
        waiter: asyncio.Future[H1Response] = loop.create_future()
        conn._reset(waiter)
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _expire, waiter, conn)
        try:
            assert conn.transport is not None
            if body:
                conn.transport.writelines((head, body))
            else:
                conn.transport.write(head)
            resp = await waiter
        except BaseException:
            conn.close()  # timed out, cancelled or broken: the answer may still come; never reuse
            raise
        finally:
            if timer is not None:
                timer.cancel()
        conn.served += 1
        self._give_back(origin.key, conn, loop.time())
        return resp


def _expire(waiter: asyncio.Future[Any], conn: _Conn) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
    conn.close()
