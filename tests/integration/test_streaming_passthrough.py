"""Streams pass through chunk by chunk, and a client that leaves closes the upstream."""
from __future__ import annotations

import socket
import time

import openai

from tests.fixtures.gateway import base_config


def _gw(gateway_factory, upstream, tmp_path):
    cfg = base_config(tmp_path, providers={"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "k"}},
                      models={"m": {"targets": ["up/model"]}})
    return gateway_factory(cfg)


def test_first_chunk_arrives_well_before_the_last_is_sent(gateway_factory, upstream, tmp_path):
    upstream.chunks, upstream.chunk_delay = 6, 0.1
    gw = _gw(gateway_factory, upstream, tmp_path)
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    arrivals = []
    for chunk in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 6
    last_sent = upstream.chunk_times[-1]
    # the first content chunk reached the client about 0.5 s before the upstream sent its last one
    assert last_sent - arrivals[0] > 0.35
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.05  # not batched up


def test_client_disconnect_mid_stream_closes_the_upstream_connection(gateway_factory, upstream, tmp_path):
    upstream.chunks, upstream.chunk_delay = 50, 0.1
    gw = _gw(gateway_factory, upstream, tmp_path)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    seen = b""
    while b"part1" not in seen:
        data = s.recv(65536)
        assert data, "stream ended early"
        seen += data
    assert seen.startswith(b"HTTP/1.1 200")
    s.close()
    left = time.monotonic()
    deadline = time.monotonic() + 3
    while not upstream.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects, "the upstream never saw its connection closed"
    assert upstream.disconnects[0] - left < 0.5
    assert len(upstream.chunk_times) < 20  # it stopped sending long before the 50 chunks


def test_disconnect_before_first_byte_cancels_the_upstream_call(gateway_factory, upstream, tmp_path):
    upstream.chunks, upstream.chunk_delay = 3, 1.0  # the first chunk takes 1 s (time to first token)
    gw = _gw(gateway_factory, upstream, tmp_path)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}'
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.3)
    s.close()
    left = time.monotonic()
    deadline = time.monotonic() + 3
    while not upstream.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects and upstream.disconnects[0] - left < 1.0
    assert upstream.chunk_times == []  # nothing was sent: cancelled during time-to-first-token
