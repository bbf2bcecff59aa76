"""A stream is billed even when the provider reports no usage or the client leaves early (never 0)."""
from __future__ import annotations

import socket
import sqlite3
import time

import openai

from tests.fixtures.gateway import base_config


def _gateway(gateway_factory, upstream, tmp_path):
    cfg = base_config(tmp_path, providers={"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k", "stream_usage": False}},
                      models={"m": {"targets": ["up/gpt-4o-mini"]}})
    return gateway_factory(cfg, env={"WATCHLLM_ALLOW_PRIVATE_UPSTREAMS": "127.0.0.1"})


def _row(tmp_path, rid: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(tmp_path / "watchllm.db") as db:
            row = db.execute("SELECT prompt_tokens, completion_tokens, cost_micros, ended FROM usage WHERE id = ?", (rid,)).fetchone()
        if row:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no usage row for {rid}")


def test_stream_without_reported_usage_is_billed_from_a_local_count(gateway_factory, upstream, tmp_path):
    gw = _gateway(gateway_factory, upstream, tmp_path)
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    resp = c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "count me"}], stream=True)
    text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
    assert text == "part0 part1 part2 part3 part4 "
    assert "stream_options" not in upstream.requests[-1]
    prompt, completion, cost, ended = _row(tmp_path, resp.headers["x-request-id"])
    assert ended == "complete" and prompt > 0 and completion >= len(text) // 4 and cost > 0


def test_stream_cut_by_the_client_is_billed_for_what_was_streamed(gateway_factory, upstream, tmp_path):
    upstream.chunks, upstream.chunk_delay = 40, 0.05
    gw = _gateway(gateway_factory, upstream, tmp_path)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-request-id: cut-1\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    seen = b""
    while b"part5" not in seen:
        seen += s.recv(65536)
    s.close()
    prompt, completion, cost, ended = _row(tmp_path, "cut-1")
    assert ended == "client_gone" and completion >= 5 and cost > 0
