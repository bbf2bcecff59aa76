"""The lean HTTP/1.1 front (gateway/http/fastpath.py) on a real gateway process, over raw sockets.

What a client must not notice: keep-alive and pipelined requests answered in order, a connection
that switches to an admin or models request mid-way (handed to aiohttp, still in order), chunked
request bodies, Connection: close, the keep-alive timeout, a client that goes away mid-request, a
SIGTERM with a request in flight. ``Server: watchllm`` marks a response of the lean front.
"""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from tests.fixtures.gateway import base_config

BODY = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "hello there"}]}).encode()


def _cfg(tmp_path, **server):
    cfg = base_config(tmp_path, providers={"mock": {"type": "mock", "request_overrides": True}})
    cfg["server"].update(server)
    return cfg


def _post(path: bytes = b"/v1/chat/completions", body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def _get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


class _Shared:
    """The connection's reader, which a finished HTTPResponse must not close."""

    def __init__(self, file) -> None:
        self._file = file

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class _Conn:
    """One socket; responses read one after another from the same buffered file."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def makefile(self, *args: object, **kwargs: object) -> "_Shared":  # what http.client.HTTPResponse reads from
        return _Shared(self.file)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, http.client.HTTPMessage, bytes]:
        r = http.client.HTTPResponse(self)  # type: ignore[arg-type]
        r.begin()
        return r.status, r.headers, r.read()

    def closed_by_peer(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.file.read(1) == b""
        except (socket.timeout, TimeoutError):
            return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    c = _Conn(gw.port)
    try:
        c.send(_post(extra=b"x-request-id: first\r\n"))
        status, headers, body = c.response()
        assert status == 200 and headers["Server"] == "watchllm" and headers["x-request-id"] == "first"
        assert json.loads(body)["choices"][0]["message"]["content"]
        # Three pipelined in one write; the first is slower upstream, yet the answers keep their order.
        c.send(_post(extra=b"x-request-id: p1\r\nx-mock-latency-ms: 150\r\n") + _post(extra=b"x-request-id: p2\r\n")
               + _post(path=b"/v1/embeddings", body=b'{"model":"mock","input":"abc"}', extra=b"x-request-id: p3\r\n"))
        got = [c.response() for _ in range(3)]
        assert [h["x-request-id"] for _, h, _ in got] == ["p1", "p2", "p3"]
        assert [s for s, _, _ in got] == [200, 200, 200]
        assert json.loads(got[2][2])["object"] == "list"
    finally:
        c.close()


def test_a_connection_switching_to_other_routes_is_handed_to_aiohttp_in_order(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    c = _Conn(gw.port)
    try:
        # A proxied request still in progress, then a models listing pipelined behind it.
        c.send(_post(extra=b"x-request-id: a\r\nx-mock-latency-ms: 150\r\n") + _get(b"/v1/models"))
        s1, h1, b1 = c.response()
        s2, h2, b2 = c.response()
        assert (s1, h1["x-request-id"], h1["Server"]) == (200, "a", "watchllm")
        assert s2 == 200 and "aiohttp" in h2["Server"] and json.loads(b2)["data"][0]["id"] == "mock"
        # From here aiohttp serves this connection: a chunked proxied request is re-framed for it intact,
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nx-request-id: b\r\n\r\n"
               + b"%x\r\n%b\r\n" % (10, BODY[:10]) + b"%x\r\n%b\r\n" % (len(BODY) - 10, BODY[10:]) + b"0\r\n\r\n")
        s3, h3, b3 = c.response()
        assert (s3, h3["x-request-id"]) == (200, "b") and "aiohttp" in h3["Server"]
        assert json.loads(b3)["choices"][0]["message"]["content"]
        # and an unknown route gets aiohttp's OpenAI-style 404.
        c.send(_get(b"/v1/nope"))
        s4, _, b4 = c.response()
        assert s4 == 404 and json.loads(b4)["error"]["code"] == "not_found"
    finally:
        c.close()


def test_a_connection_that_starts_with_another_route_is_aiohttps(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    c = _Conn(gw.port)
    try:
        c.send(_get(b"/health"))
        s1, h1, b1 = c.response()
        assert s1 == 200 and "aiohttp" in h1["Server"] and json.loads(b1)["status"] == "ok"
        c.send(_post())
        s2, h2, _ = c.response()
        assert s2 == 200 and "aiohttp" in h2["Server"]
        c2 = _Conn(gw.port)  # an HTTP/1.0 request is aiohttp's too
        try:
            c2.send(_post().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            s3, h3, _ = c2.response()
            assert s3 == 200 and "aiohttp" in h3["Server"]
        finally:
            c2.close()
    finally:
        c.close()


def test_connection_close_and_the_keep_alive_timeout(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path, keepalive_timeout=1.0))
    c = _Conn(gw.port)
    try:
        c.send(_post(extra=b"Connection: close\r\n"))
        status, headers, _ = c.response()
        assert status == 200 and headers["Connection"] == "close"
        assert c.closed_by_peer(5)
    finally:
        c.close()
    c = _Conn(gw.port)
    try:
        c.send(_post())
        assert c.response()[0] == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(10), "an idle keep-alive connection must be closed"
        assert 0.5 < time.monotonic() - t0 < 5
    finally:
        c.close()


def test_a_stalled_body_ends_the_connection_and_a_slow_steady_one_does_not(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path, keepalive_timeout=1.0))
    c = _Conn(gw.port)
    try:
        head = _post()[: -len(BODY)]
        c.send(head + BODY[:10])  # then nothing: the rest of the body never comes
        t0 = time.monotonic()
        assert c.closed_by_peer(10)
        assert 0.5 < time.monotonic() - t0 < 5
    finally:
        c.close()
    c = _Conn(gw.port)
    try:
        c.send(head)
        for i in range(0, len(BODY), 8):  # ~2 s in all, a piece every 0.2 s: slower than the timeout in total
            c.send(BODY[i:i + 8])
            time.sleep(0.2)
        status, headers, _ = c.response()
        assert status == 200 and headers["Server"] == "watchllm"
    finally:
        c.close()


def test_errors_on_the_lean_front_are_openai_style(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path, max_body_bytes=1000))
    c = _Conn(gw.port)
    try:
        c.send(_post(body=b"{not json"))
        status, headers, body = c.response()
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_request" and headers["Server"] == "watchllm"
        c.send(_post(body=json.dumps({"model": "mock"}).encode()))  # no messages: still the same connection
        status, _, body = c.response()
        assert status == 400 and json.loads(body)["error"]["param"] == "messages"
        c.send(_post(body=BODY).replace(b"application/json", b"text/plain"))
        status, _, body = c.response()
        assert status == 400 and "application/json" in json.loads(body)["error"]["message"]
        c.send(_post(body=b"x" * 2000))
        status, headers, body = c.response()
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
        assert headers["Connection"] == "close" and c.closed_by_peer(5)
    finally:
        c.close()


def test_a_client_gone_mid_request_cancels_it_and_the_gateway_goes_on(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    c = _Conn(gw.port)
    c.send(_post(extra=b"x-mock-latency-ms: 3000\r\n"))
    time.sleep(0.3)
    c.close()
    time.sleep(0.3)
    c = _Conn(gw.port)
    try:
        t0 = time.monotonic()
        c.send(_post())
        assert c.response()[0] == 200 and time.monotonic() - t0 < 2
    finally:
        c.close()
    assert "Traceback" not in gw.log()


@pytest.mark.parametrize("stream", [False, True])
def test_sigterm_lets_a_request_in_flight_finish(gateway_factory, tmp_path, stream):
    gw = gateway_factory(_cfg(tmp_path))
    c = _Conn(gw.port)
    try:
        body = json.dumps({"model": "mock", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
        c.send(_post(body=body, extra=b"x-mock-latency-ms: 800\r\n"))
        time.sleep(0.3)
        assert gw.proc is not None
        gw.proc.send_signal(15)
        status, headers, data = c.response()
        assert status == 200
        if stream:
            assert data.rstrip().endswith(b"data: [DONE]")
        else:
            assert json.loads(data)["choices"] and headers["Connection"] == "close"
        assert gw.proc.wait(20) == 0
    finally:
        c.close()
