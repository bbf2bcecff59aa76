"""Slowloris: a client dribbling its headers is dropped at the header deadline; normal traffic is served."""
from __future__ import annotations

import socket
import threading
import time

import openai

from tests.fixtures.gateway import base_config


def _dribble(port: int, every: float, out: dict) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    started = time.monotonic()
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        for i in range(100):
            time.sleep(every)
            s.sendall(f"X-Slow-{i}: 1\r\n".encode())
    except OSError:
        pass
    try:
        data = s.recv(1024)
    except OSError:
        data = b""
    out["closed_after"] = time.monotonic() - started
    out["data"] = data
    s.close()


def test_dribbling_client_is_dropped_at_the_header_deadline_while_others_are_served(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, server={"header_read_timeout": 2.0, "shutdown_timeout": 5}))
    results = [dict() for _ in range(5)]
    threads = [threading.Thread(target=_dribble, args=(gw.port, 0.3, r)) for r in results]
    for t in threads:
        t.start()
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0, timeout=5)
    latencies = []
    for _ in range(20):
        t0 = time.monotonic()
        assert c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}]).choices
        latencies.append(time.monotonic() - t0)
    for t in threads:
        t.join(20)
    for r in results:
        assert 1.5 <= r["closed_after"] <= 4.0, r
        assert not r["data"].startswith(b"HTTP/1.1 200")
    assert max(latencies) < 1.0


def test_a_slow_but_steady_body_upload_is_not_cut_by_the_header_deadline(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, server={"header_read_timeout": 1.0, "shutdown_timeout": 5}))
    body = b'{"model":"mock","messages":[{"role":"user","content":"' + b"a" * 300 + b'"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n")
    for i in range(0, len(body), 40):  # about 2 s of body upload, past the 1 s header deadline
        s.sendall(body[i : i + 40])
        time.sleep(0.25)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
