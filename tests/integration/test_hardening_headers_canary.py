"""Header hygiene and T3 canaries, through a real gateway process.

* hop-by-hop headers and the client's Authorization / API-key headers never reach the upstream;
  the upstream sees the provider's own key.
* canary secrets and PII sent in prompts (and the client's key) never appear in the gateway's
  log file (DEBUG level, access log on) or in /metrics, across success, streaming, upstream
  errors and invalid requests.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.fixtures.gateway import base_config

CLIENT_KEY = "sk-clientCANARYkey0123456789abcdef"
CANARIES = [
    "CANARY-7f3a9c-secret-prompt", "sk-proj-CANARY0000111122223333444455556666", "AKIACANARY7EXAMPLE42",
    "canary.person@example.org", "4111111111111111", "078-05-1120", "ghp_CANARY0123456789abcdefABCDEF01234567",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlQ0FOQVJZ",
]
MODEL_CANARY = "sk-modelfieldCANARY0123456789"  # a secret pasted into the `model` field (client-controlled)
HOP_BY_HOP = {"connection", "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection", "trailer",
              "transfer-encoding", "proxy-authenticate"}


def _cfg(tmp_path, upstream):
    return base_config(tmp_path, server={"shutdown_timeout": 5, "access_log": True},
                       providers={"up": {"type": "openai", "api_key": "sk-upstream-own-key", "base_url": upstream.base_url}},
                       models={"m": {"targets": ["up/x"], "max_attempts": 1}},
                       pipeline=[{"metrics": {}}, {"router": {}}])


def _req(url: str, body: dict | bytes | None, headers: dict[str, str], method: str = "POST") -> tuple[int, bytes]:
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_hop_by_hop_and_client_authorization_are_not_forwarded(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream))
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    # raw socket so the hop-by-hop headers really go on the wire as sent
    extra = (b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\nX-Api-Key: " + CLIENT_KEY.encode() + b"\r\n"
             b"Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: hop-value\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
             b"Proxy-Authorization: Basic Q0FOQVJZOnByb3h5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n"
             b"Trailer: X-Foo\r\nCookie: session=CANARYcookie\r\nX-Forwarded-For: 10.9.9.9\r\n")
    s = socket.create_connection(("127.0.0.1", gp.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)
    resp = b""
    t0 = time.monotonic()
    while b"\r\n\r\n" not in resp and time.monotonic() - t0 < 10:
        resp += s.recv(65536)
    s.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
    assert len(upstream.headers) == 1
    status, _ = _req(f"{gp.base_url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                     {"Authorization": f"Bearer {CLIENT_KEY}", "X-Api-Key": CLIENT_KEY, "Proxy-Authorization": "Basic eDp5",
                      "TE": "trailers", "Keep-Alive": "timeout=5", "Cookie": "session=CANARYcookie"})
    assert status == 200
    assert upstream.headers, "nothing reached the upstream"
    for h in upstream.headers:
        lower = {k.lower(): v for k, v in h.items()}
        assert lower.get("authorization") == "Bearer sk-upstream-own-key", lower
        assert not (HOP_BY_HOP - {"connection"}) & set(lower), lower
        assert "x-secret-hop" not in lower and "x-api-key" not in lower and "cookie" not in lower
        assert CLIENT_KEY not in json.dumps(lower) and "CANARY" not in json.dumps(lower)
        assert lower.get("connection", "keep-alive").lower() in ("keep-alive", "close")


def test_canaries_never_reach_logs_or_metrics(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream), env={"LOG_LEVEL": "DEBUG"})
    prompt = "please remember " + " and ".join(CANARIES)
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    url = gp.base_url
    results = []
    results.append(_req(f"{url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}]}, auth)[0])
    results.append(_req(f"{url}/chat/completions", {"model": "m", "stream": True, "messages": [{"role": "system", "content": prompt},
                                                                                              {"role": "user", "content": prompt}]}, auth)[0])
    results.append(_req(f"{url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}], "n": "x"}, auth)[0])
    results.append(_req(f"{url}/chat/completions", {"model": "m", "messages": prompt}, auth)[0])
    results.append(_req(f"{url}/chat/completions", ('{"model":"m","messages":[{"role":"user","content":"' + prompt + '"').encode(), auth)[0])
    upstream.status = 500
    results.append(_req(f"{url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}]}, auth)[0])
    upstream.status = 200
    results.append(_req(f"{url}/completions", {"model": "m", "prompt": prompt}, auth)[0])
    results.append(_req(f"{url}/embeddings", {"model": "m", "input": [prompt]}, auth)[0])
    assert results[0] == 200 and results[1] == 200, results
    assert not [s for s in results if s >= 500 and s not in (502, 503)], results
    assert len(upstream.requests) >= 2 and any(CANARIES[0] in json.dumps(r) for r in upstream.requests)  # prompts did flow
    status, metrics = _req(f"{gp.url}/metrics", None, {}, method="GET")
    assert status == 200 and b"watchllm_requests" in metrics
    time.sleep(0.5)  # let the log flush
    log = gp.log()
    assert "POST /v1/chat/completions" in log or "watchllm" in log  # logging was on
    leaks = [c for c in [*CANARIES, CLIENT_KEY, "sk-upstream-own-key"] if c in log or c.encode() in metrics]
    print(f"\nT3: {len(results)} requests {results}; log {len(log)} chars, metrics {len(metrics)} bytes; leaks: {leaks}")
    assert leaks == [], leaks


def test_secret_in_unknown_model_name_is_not_logged(gateway_factory, tmp_path, upstream):
    gp = gateway_factory(_cfg(tmp_path, upstream), env={"LOG_LEVEL": "DEBUG"})
    status, _ = _req(f"{gp.base_url}/chat/completions", {"model": MODEL_CANARY, "messages": [{"role": "user", "content": "x"}]},
                     {"Authorization": f"Bearer {CLIENT_KEY}"})
    assert status == 404
    _, metrics = _req(f"{gp.url}/metrics", None, {}, method="GET")
    assert MODEL_CANARY.encode() not in metrics  # metrics bucket unknown models as "other"
    time.sleep(0.5)
    assert MODEL_CANARY not in gp.log()
