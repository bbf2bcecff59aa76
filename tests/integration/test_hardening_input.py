"""E1/E2: hostile input gets 400/413/431 with a stable code, bounded memory, and nothing reaches the upstream.

Raw sockets against a real gateway process (production runner, llhttp parser); the provider
points at the scriptable upstream so ``upstream.requests`` counts what was forwarded.
Memory: the gateway's peak RSS (VmHWM) after the hostile requests minus its RSS before.
"""
from __future__ import annotations

import json
import socket
import time

import psutil
import pytest

from tests.fixtures.gateway import base_config

MiB = 1024 * 1024


def _cfg(tmp_path, upstream, **server):
    return base_config(tmp_path, server={"shutdown_timeout": 5, **server},
                       providers={"up": {"type": "openai", "api_key": "sk-upstream", "base_url": upstream.base_url}},
                       models={"m": {"targets": ["up/x"], "max_attempts": 1}})


def _raw(port: int, data: bytes, timeout: float = 10.0, then_wait: bool = True) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while then_wait and time.monotonic() < deadline:
            try:
                piece = s.recv(65536)
            except (socket.timeout, OSError):
                break
            if not piece:
                break
            out += piece
            if b"\r\n\r\n" in out and _complete(out):
                break
        return out
    finally:
        s.close()


def _complete(resp: bytes) -> bool:
    head, _, body = resp.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return True


def _status(resp: bytes) -> int:
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _code(resp: bytes) -> str | None:
    body = resp.partition(b"\r\n\r\n")[2]
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def _hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return psutil.Process(pid).memory_info().rss


def test_body_limits_and_json_bombs(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream))  # default max_body_bytes 4 MiB
    pid = gp.proc.pid
    ok = json.dumps({"model": "m", "messages": [{"role": "user", "content": "warm up"}]}).encode()
    assert _status(_raw(gp.port, _post(b"/v1/chat/completions", ok))) == 200  # warm: imports, pools
    upstream.requests.clear()
    rss0 = psutil.Process(pid).memory_info().rss
    results: dict[str, tuple[int, str | None, float]] = {}

    def run(name: str, payload: bytes, timeout: float = 20) -> None:
        t0 = time.monotonic()
        resp = _raw(gp.port, payload, timeout)
        results[name] = (_status(resp), _code(resp), time.monotonic() - t0)

    deep = b'{"model":"m","messages":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    run("nested_10k_array", _post(b"/v1/chat/completions", deep))
    deep_obj = b'{"model":"m","x":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}"
    run("nested_10k_object", _post(b"/v1/chat/completions", deep_obj))
    depth_65 = b'{"model":"m","x":' + b"[" * 70 + b"]" * 70 + b"}"
    run("nested_70", _post(b"/v1/chat/completions", depth_65))
    ints = b"[" + b",".join([b"0"] * 1_000_000) + b"]"
    run("array_1m_ints_messages", _post(b"/v1/chat/completions", b'{"model":"m","messages":' + ints + b"}"))
    objs = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"
    run("array_1m_objects_messages", _post(b"/v1/chat/completions", b'{"model":"m","messages":' + objs + b"}"))
    run("array_1m_top_level", _post(b"/v1/embeddings", ints))
    strs = b"[" + b",".join([b'""'] * 1_500_000) + b"]"  # 4.5 MB
    run("array_1m_strings_prompt_over_limit", _post(b"/v1/completions", b'{"model":"m","prompt":' + strs + b"}"))
    big = b'{"model":"m","messages":[{"role":"user","content":"' + b"a" * (5 * MiB) + b'"}]}'
    run("content_length_over_limit", _post(b"/v1/chat/completions", big))
    run("cl_declared_over_limit_no_body", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          b"Content-Length: 999999999\r\n\r\n")
    run("not_json", _post(b"/v1/chat/completions", b"\xff\xfe{{{"))
    run("wrong_content_type", _post(b"/v1/chat/completions", ok).replace(b"application/json", b"text/plain", 1))
    growth = _hwm(pid) - rss0
    print("\nE1 results:", json.dumps(results), f"peak RSS growth {growth / MiB:.1f} MiB")
    for name, (status, code, took) in results.items():
        assert status in (400, 413), (name, status)
        assert code in ("invalid_request", "payload_too_large"), (name, code)
        assert took < 10, (name, took)
    for name in ("content_length_over_limit", "cl_declared_over_limit_no_body", "array_1m_strings_prompt_over_limit"):
        assert results[name][0] == 413, name
    assert growth < 50 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert upstream.requests == []


def test_chunked_body_over_limit_is_refused_before_the_end(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream, max_body_bytes=65536))
    s = socket.create_connection(("127.0.0.1", gp.port), timeout=10)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b'{"model":"m","messages":[{"role":"user","content":"' + b"a" * 8000
        s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent = len(piece)
        for _ in range(12):  # 12 × 8000 > 64 KiB; the terminating 0-chunk is never sent
            filler = b"a" * 8000
            s.sendall(b"%x\r\n%s\r\n" % (len(filler), filler))
            sent += len(filler)
        t0 = time.monotonic()
        resp = b""
        while b"\r\n\r\n" not in resp and time.monotonic() - t0 < 5:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
        took = time.monotonic() - t0
    finally:
        s.close()
    print(f"\nchunked: sent {sent} bytes (unterminated), 413 after {took * 1000:.0f} ms")
    assert _status(resp) == 413, resp[:200]
    assert took < 2.0
    assert upstream.requests == []


MALFORMED = {
    "header_line_8191": lambda: b"X-Big: " + b"a" * 8200 + b"\r\n",
    "request_line_too_long": None,
    "headers_129": lambda: b"".join(b"X-H%d: v\r\n" % i for i in range(130)),
    "cl_and_te": lambda: b"Transfer-Encoding: chunked\r\n",
    "duplicate_cl": lambda: b"Content-Length: 3\r\n",
    "cr_in_value": lambda: b"X-Evil: a\rb\r\n",
    "lf_in_value": lambda: b"X-Evil: a\nInjected: b\r\n",
    "nul_in_value": lambda: b"X-Evil: a\x00b\r\n",
    "obs_fold": lambda: b"X-Fold: a\r\n  continued\r\n",
    "space_before_colon": lambda: b"Content-Length : 5\r\n",
    "te_obfuscated": lambda: b"Transfer-Encoding: xchunked\r\n",
}


def test_malformed_headers_are_refused_and_nothing_is_forwarded(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    results: dict[str, int] = {}
    for name, extra in MALFORMED.items():
        if name == "request_line_too_long":
            payload = b"POST /v1/chat/completions?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        else:
            payload = _post(b"/v1/chat/completions", body, extra())
        results[name] = _status(_raw(gp.port, payload, 10))
    bare_lf = b"POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: %d\n\n" % len(body) + body
    results["bare_lf_line_endings"] = _status(_raw(gp.port, bare_lf, 10))
    print("\nE2 results:", json.dumps(results), "upstream requests:", len(upstream.requests))
    for name, status in results.items():
        assert status in (400, 413, 414, 431) or status == 0, (name, status)  # 0 = connection closed without a response
    assert upstream.requests == [], [r.get("messages") for r in upstream.requests]
    assert _status(_raw(gp.port, _post(b"/v1/chat/completions", body), 10)) == 200  # positive control
    assert len(upstream.requests) == 1
