"""The router through a real gateway process: fallbacks, breakers, timeouts, Retry-After, streams, spreading.

Two mock provider instances with different options give one failing and one healthy
target; the scriptable ``upstream`` (through the ``openai`` provider) gives real HTTP
429s with ``Retry-After``.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import http.client
import orjson

from tests.fixtures.gateway import base_config

MSG = {"messages": [{"role": "user", "content": "hello"}]}


class Resp:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, body

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return orjson.loads(self.content)


class Client:
    """A keep-alive loopback HTTP client (stdlib only), enough for these tests."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
        data = orjson.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        return self.conn.getresponse()

    def get(self, path: str) -> Resp:
        r = self.request("GET", path)
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())

    def post(self, path: str, body: Any) -> Resp:
        r = self.request("POST", path, body)
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())

    def stream_events(self, path: str, body: Any) -> tuple[Resp, list[str]]:
        r = self.request("POST", path, body)
        events = [line.decode().rstrip("\n")[6:] for line in iter(r.readline, b"") if line.startswith(b"data: ")]
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, b""), events


def chat(client: Client, model: str, **kw: Any) -> Resp:
    return client.post("/v1/chat/completions", {"model": model, **MSG, **kw})


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def test_primary_always_5xx_every_request_succeeds_via_fallback_and_breaker_bounds_attempts(gateway_factory, tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        providers={"bad": {"type": "mock", "fail_status": 500}, "good": {"type": "mock"}},
        models={"main": {"targets": ["bad/mock-1"], "fallbacks": ["backup"], "max_attempts": 2},
                "backup": {"targets": ["good/mock-1"]}},
        pipeline=[{"router": {"breaker_failures": 5, "breaker_cooldown": 60}}],
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        attempts = []
        for _ in range(40):
            r = chat(client, "main")
            assert r.status_code == 200, r.text
            assert r.headers["x-watchllm-provider"] == "good"
            attempts.append(int(r.headers["x-watchllm-attempts"]))
        assert max(attempts[:5]) <= 2 and set(attempts[5:]) == {1}
        view = {p["id"]: p for p in client.get("/v1/providers").json()["data"]}
        assert view["bad"]["targets"]["mock-1"]["state"] == "open"
        assert view["bad"]["targets"]["mock-1"]["requests"] == 5  # 0 attempts to primary once open

        # added latency once the breaker is open: routed via the fallback vs the fallback alias directly
        via, direct = [], []
        for _ in range(300):
            t = time.perf_counter(); assert chat(client, "main").status_code == 200; via.append(time.perf_counter() - t)
            t = time.perf_counter(); assert chat(client, "backup").status_code == 200; direct.append(time.perf_counter() - t)
        added_ms = (p99(via) - p99(direct)) * 1000
        print(f"breaker open: p99 via fallback {p99(via) * 1000:.2f} ms, direct {p99(direct) * 1000:.2f} ms, added {added_ms:.2f} ms")
        assert added_ms <= 50


def test_every_target_open_fails_fast_with_503(gateway_factory, tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        providers={"bad": {"type": "mock", "fail_status": 503}},
        models={"main": {"targets": ["bad/mock-1"], "max_attempts": 1}},
        pipeline=[{"router": {"breaker_failures": 2, "breaker_cooldown": 60}}],
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        assert [chat(client, "main").status_code for _ in range(2)] == [502, 502]
        r = chat(client, "main")
        assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
        assert int(r.headers["retry-after"]) >= 1


def test_a_hung_upstream_is_cut_at_its_timeout_within_10_percent(gateway_factory, tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        providers={"hung": {"type": "mock", "hang": True, "timeout": 3600}, "good": {"type": "mock"}},
        models={"main": {"targets": [{"target": "hung/mock-1", "timeout": 0.5}], "max_attempts": 1},
                "withfb": {"targets": [{"target": "hung/mock-1", "timeout": 0.5}, "good/mock-1"], "strategy": "fallback"}},
        pipeline=[{"router": {"breaker_failures": 0, "breaker_failure_rate": 0}}],
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        for model, status in (("main", 504), ("withfb", 200)):
            t = time.perf_counter()
            r = chat(client, model)
            elapsed = time.perf_counter() - t
            print(f"hung upstream ({model}): answered {r.status_code} after {elapsed * 1000:.0f} ms (timeout 500 ms)")
            assert r.status_code == status and 0.45 <= elapsed <= 0.55, (r.status_code, elapsed)


def _retry_after_gateway(gateway_factory, tmp_path: Path, upstream, mode: str, models: dict[str, Any]):  # type: ignore[no-untyped-def]
    cfg = base_config(
        tmp_path,
        providers={"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-test-not-a-secret"},
                   "good": {"type": "mock"}},
        models=models,
        pipeline=[{"router": {"retry_after": mode, "max_retry_after": 5}}],
    )
    return gateway_factory(cfg)


def test_429_retry_after_1_falls_back_at_once_and_cools_the_target(gateway_factory, tmp_path: Path, upstream) -> None:
    upstream.status, upstream.retry_after = 429, "1"
    gw = _retry_after_gateway(gateway_factory, tmp_path, upstream, "fallback",
                              {"main": {"targets": ["up/gpt-x", "good/mock-1"], "strategy": "fallback"}})
    with Client(gw.url) as client:
        t = time.perf_counter()
        r = chat(client, "main")
        assert r.status_code == 200 and r.headers["x-watchllm-provider"] == "good"
        assert time.perf_counter() - t < 0.5 and r.headers["x-watchllm-attempts"] == "2"
        r = chat(client, "main")  # within the second: the cooled target is skipped
        assert r.headers["x-watchllm-attempts"] == "1" and len(upstream.requests) == 1
        time.sleep(1.05)
        upstream.status = 200
        r = chat(client, "main")
        assert r.headers["x-watchllm-provider"] == "up" and len(upstream.requests) == 2


def test_429_retry_after_1_is_honoured_when_configured(gateway_factory, tmp_path: Path, upstream) -> None:
    upstream.status, upstream.retry_after = 429, "1"
    gw = _retry_after_gateway(gateway_factory, tmp_path, upstream, "honour",
                              {"main": {"targets": ["up/gpt-x"], "max_attempts": 2}})
    flip = threading.Timer(0.5, lambda: setattr(upstream, "status", 200))
    flip.start()
    with Client(gw.url) as client:
        t = time.perf_counter()
        r = chat(client, "main")
        elapsed = time.perf_counter() - t
    flip.join()
    assert r.status_code == 200 and r.headers["x-watchllm-provider"] == "up" and r.headers["x-watchllm-attempts"] == "2"
    assert 1.0 <= elapsed < 1.5, elapsed
    assert len(upstream.requests) == 2


def test_mid_stream_failure_ends_with_an_sse_error_event_and_no_retry(gateway_factory, tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        providers={"cut": {"type": "mock", "cut_after_chunks": 2, "chunks": 6}, "good": {"type": "mock"}},
        models={"main": {"targets": ["cut/mock-1"], "fallbacks": ["backup"]}, "backup": {"targets": ["good/mock-1"]}},
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        r, events = client.stream_events("/v1/chat/completions", {"model": "main", "stream": True, **MSG})
        assert r.status_code == 200 and r.headers["x-watchllm-provider"] == "cut"
        assert events[-1] != "[DONE]"
        last = orjson.loads(events[-1])
        assert last["error"]["code"] == "provider_error" and last["error"]["type"]
        content = [orjson.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in content) and len(content) == 3  # role + 2 parts
        view = {p["id"]: p for p in client.get("/v1/providers").json()["data"]}
        assert view["good"]["targets"]["mock-1"]["requests"] == 0  # nothing retried after bytes were sent
        assert view["cut"]["targets"]["mock-1"]["requests"] == 1


def test_weights_3_to_1_spread_requests_end_to_end(gateway_factory, tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        providers={"a": {"type": "mock"}, "b": {"type": "mock"}},
        models={"main": {"targets": [{"target": "a/mock-1", "weight": 3}, {"target": "b/mock-1", "weight": 1}]}},
        pipeline=[{"router": {"seed": 3}}],
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        seen = Counter(chat(client, "main").headers["x-watchllm-provider"] for _ in range(400))
    print(f"weights 3:1 over 400 requests: {dict(seen)}")
    assert abs(seen["a"] / 400 - 0.75) <= 0.05, seen


def test_provider_endpoints_show_state_and_never_a_key(gateway_factory, tmp_path: Path, upstream) -> None:
    secret = "sk-live-" + "x" * 24
    cfg = base_config(
        tmp_path,
        providers={"up": {"type": "openai", "base_url": upstream.base_url, "api_key": secret}, "m": {"type": "mock"}},
        models={"main": {"targets": ["up/gpt-x", "m/mock-1"]}},
    )
    gw = gateway_factory(cfg)
    with Client(gw.url) as client:
        r = client.get("/v1/providers")
        assert r.status_code == 200 and secret not in r.text and "api_key" not in r.text
        ids = {p["id"]: p for p in r.json()["data"]}
        assert ids["up"]["type"] == "openai" and ids["up"]["models"] == ["gpt-x"] and ids["m"]["circuit"] == "closed"
        h1 = client.get("/providers/health")
        assert secret not in h1.text
        body = h1.json()
        assert {p["id"] for p in body["providers"]} == {"up", "m"}
        assert all("latency_ms" in p for p in body["providers"]) and body["cached"] is False
        assert client.get("/providers/health").json()["cached"] is True
