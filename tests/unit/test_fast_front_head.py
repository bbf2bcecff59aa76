"""The lean front's response head (gateway/http/fastpath.py): framing is its own, no header injection."""
from __future__ import annotations

import pytest

from gateway.http.fastpath import _head


def _lines(raw: bytes) -> list[str]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep and rest == b""
    return head.decode().split("\r\n")


def test_status_line_length_date_and_server():
    lines = _lines(_head(201, {"x-request-id": "r1", "Content-Type": "application/json"}, 17, False))
    assert lines[0] == "HTTP/1.1 201 Created"
    assert "x-request-id: r1" in lines and "Content-Type: application/json" in lines
    assert "Content-Length: 17" in lines and "Server: watchllm" in lines
    assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines)
    assert not any(line.lower().startswith("connection:") for line in lines)


def test_streamed_and_closing_responses():
    lines = _lines(_head(200, {"Content-Type": "text/event-stream"}, None, True))
    assert "Transfer-Encoding: chunked" in lines and "Connection: close" in lines
    assert not any(line.startswith("Content-Length") for line in lines)


def test_a_middlewares_framing_headers_are_dropped():
    lines = _lines(_head(200, {"content-length": "999", "Connection": "keep-alive", "Transfer-Encoding": "gzip", "x-ok": "1"}, 5, False))
    assert [line for line in lines if line.lower().startswith(("content-length", "connection", "transfer-encoding"))] == ["Content-Length: 5"]
    assert "x-ok: 1" in lines


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_newlines_in_a_header_value_are_refused(value):
    with pytest.raises(ValueError):
        _head(200, {"x-evil": value}, 0, False)
