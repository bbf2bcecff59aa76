"""The lean upstream client (gateway/upstream/h1.py) against real loopback servers.

Raw asyncio servers write the exact bytes each case needs: keep-alive reuse, chunked and
read-to-close bodies, gzip, a server that closes idle connections (the keep-alive race),
a hung server (deadline), an oversized answer, header injection, and the SSRF resolver.
"""
from __future__ import annotations

import asyncio
import gzip

import pytest

from gateway.netguard import Allowlist, GuardedResolver
from gateway.upstream.h1 import H1Client, UpstreamError

def loopback() -> GuardedResolver:
    return GuardedResolver(Allowlist.parse(["127.0.0.1"]))


class RawServer:
    """Answers each request with ``answer(request_bytes, n)``; counts connections and requests."""

    def __init__(self, answer, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                out = self.answer(head + body, len(self.requests))
                if out is None:  # hang
                    await asyncio.sleep(30)
                    return
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_reuses_one_connection_and_sends_the_body():
    srv = RawServer(lambda req, n: ok(b'{"n": %d}' % n))
    url = await srv.start()
    client = H1Client(resolver=loopback())
    try:
        for i in range(1, 6):
            resp = await client.request("POST", url + "/v1/chat", headers={"Authorization": "Bearer k"}, body=b'{"a":1}', timeout=5)
            assert resp.status == 200 and resp.body == b'{"n": %d}' % i
            assert resp.headers["content-type"] == "application/json"
        assert srv.connections == 1
        first = srv.requests[0]
        assert first.startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer k\r\n" in first and b"\r\nContent-Length: 7\r\n" in first
        assert first.endswith(b'{"a":1}')
    finally:
        await client.close()
        await srv.stop()


async def test_chunked_and_read_to_close_and_gzip_bodies():
    payload = b'{"choices": []}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n" + payload[:5] + b"\r\n" + \
        f"{len(payload) - 5:x}".encode() + b"\r\n" + payload[5:] + b"\r\n0\r\n\r\n"
    gz = gzip.compress(payload)
    answers = {1: chunked, 2: ok(gz, "Content-Encoding: gzip\r\n")}
    srv = RawServer(lambda req, n: answers[n])
    url = await srv.start()
    close_srv = RawServer(lambda req, n: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + payload, close_after=True)
    close_url = await close_srv.start()
    client = H1Client(resolver=loopback())
    try:
        assert (await client.request("GET", url + "/a", headers={}, timeout=5)).body == payload
        assert (await client.request("GET", url + "/b", headers={}, timeout=5)).body == payload
        assert (await client.request("GET", close_url + "/c", headers={}, timeout=5)).body == payload
    finally:
        await client.close()
        await srv.stop()
        await close_srv.stop()


async def test_a_request_on_a_connection_the_server_closed_is_sent_again_on_a_new_one():
    srv = RawServer(lambda req, n: ok(b"{}"), close_after=True)  # closes after every answer, without saying so
    url = await srv.start()
    client = H1Client(resolver=loopback())
    try:
        for _ in range(3):
            assert (await client.request("POST", url + "/x", headers={}, body=b"{}", timeout=5)).status == 200
            await asyncio.sleep(0.05)
        assert srv.connections == 3
        assert len(srv.requests) == 3  # each sent once to the server that answered it
    finally:
        await client.close()
        await srv.stop()


async def test_deadline_fires_on_a_hung_upstream_and_the_connection_is_not_reused():
    srv = RawServer(lambda req, n: None if n == 1 else ok(b"{}"))
    url = await srv.start()
    client = H1Client(resolver=loopback())
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await client.request("POST", url + "/x", headers={}, body=b"{}", timeout=0.3)
        took = loop.time() - t0
        assert 0.27 <= took <= 0.4, took
        assert (await client.request("POST", url + "/x", headers={}, body=b"{}", timeout=5)).status == 200
        assert srv.connections == 2
    finally:
        await client.close()
        await srv.stop()


async def test_reset_in_the_middle_of_an_answer_is_an_error_not_a_short_body():
    srv = RawServer(lambda req, n: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\"", close_after=True)
    url = await srv.start()
    client = H1Client(resolver=loopback())
    try:
        with pytest.raises(UpstreamError, match="middle of the answer"):
            await client.request("POST", url + "/x", headers={}, body=b"{}", timeout=5)
    finally:
        await client.close()
        await srv.stop()


async def test_oversized_answer_and_header_injection_are_refused():
    srv = RawServer(lambda req, n: ok(b"x" * 5000))
    url = await srv.start()
    client = H1Client(resolver=loopback(), max_body=1000)
    try:
        with pytest.raises(UpstreamError, match="larger than 1000"):
            await client.request("GET", url + "/big", headers={}, timeout=5)
        with pytest.raises(ValueError, match="forbidden character"):
            await client.request("GET", url + "/x", headers={"Authorization": "Bearer k\r\nX-Evil: 1"}, timeout=5)
        assert all(b"X-Evil" not in r for r in srv.requests)
    finally:
        await client.close()
        await srv.stop()


async def test_ssrf_private_literal_refused_without_the_allow_list():
    srv = RawServer(lambda req, n: ok(b"{}"))
    url = await srv.start()
    client = H1Client(resolver=GuardedResolver(Allowlist.parse([])))
    try:
        with pytest.raises(UpstreamError, match="non-public|refused"):
            await client.request("GET", url + "/x", headers={}, timeout=5)
        assert srv.connections == 0
        assert (await H1Client(resolver=loopback()).request("GET", url + "/x", headers={}, timeout=5)).status == 200
    finally:
        await client.close()
        await srv.stop()


async def test_nothing_listening_is_an_upstream_error():
    client = H1Client(resolver=loopback())
    with pytest.raises(UpstreamError, match="cannot connect"):
        await client.request("GET", "http://127.0.0.1:9/x", headers={}, timeout=5)
