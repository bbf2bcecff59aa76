"""U3/U6/U7: upstream faults through the fault-injecting proxy map to a retry, a fallback, or a
502/504/SSE error event with a stable code; per-try timeouts fire within ±10%; a slow but
live stream is not killed. A real gateway process; the openai provider points at the proxy."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.fixtures.faultproxy import FaultProxy, faultproxy  # noqa: F401  (fixture)
from tests.fixtures.gateway import base_config

PER_TRY = 1.0


def _cfg(tmp_path, proxy: FaultProxy):
    return base_config(
        tmp_path, server={"shutdown_timeout": 5},
        providers={"fp": {"type": "openai", "api_key": "sk-up", "base_url": proxy.base_url, "read_timeout": 0.5, "connect_timeout": 2},
                   "backup": {"type": "mock", "reply": "from backup"}},
        models={"solo": {"targets": [{"target": "fp/x", "timeout": PER_TRY}], "max_attempts": 1},
                "retry": {"targets": [{"target": "fp/x", "timeout": PER_TRY}], "max_attempts": 2},
                "fb": {"targets": [{"target": "fp/x", "timeout": PER_TRY}], "max_attempts": 2, "fallbacks": ["backup"]},
                "backup": {"targets": ["backup/mock-1"]}},
        pipeline=[{"router": {"breaker_failures": 0, "breaker_failure_rate": 0, "retry_budget_percent": 0}}],
    )


def _post(url: str, body: dict, timeout: float = 30) -> tuple[int, bytes, float]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return r.status, data, time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0


def _chat(gp, model: str, stream: bool = False) -> tuple[int, bytes, float]:
    return _post(f"{gp.base_url}/chat/completions", {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


def _code(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _events(body: bytes) -> list[str]:
    return [ln[6:].decode() for ln in body.split(b"\n") if ln.startswith(b"data: ")]


@pytest.fixture
def rig(gateway_factory, tmp_path, faultproxy):  # noqa: F811
    gp = gateway_factory(_cfg(tmp_path, faultproxy))
    return gp, faultproxy


def test_non_stream_faults_map_to_stable_errors(rig, upstream):
    gp, fp = rig
    table: dict[str, tuple] = {}
    for mode, expect_status, expect_code in [
        ("reset_before", 502, "provider_error"), ("invalid_json", 502, "provider_error"), ("error_200", 502, "provider_error"),
        ("reset_after", 502, "provider_error"), ("hang", 504, "provider_timeout"),
    ]:
        fp.mode, before = mode, fp.connections
        fp.after_bytes = 60  # inside the response headers: the body never completes
        status, body, took = _chat(gp, "solo")
        table[mode] = (status, _code(body), round(took, 3), fp.connections - before)
        assert (status, _code(body)) == (expect_status, expect_code), (mode, status, body[:300])
        assert b"Traceback" not in body
    print("\nU7 non-stream:", table)
    assert PER_TRY * 0.9 <= table["hang"][2] <= PER_TRY * 1.1 + 0.1, table["hang"]


def test_per_try_timeout_accuracy(rig):
    gp, fp = rig
    fp.mode = "hang"
    took = []
    for _ in range(3):
        status, body, t = _chat(gp, "solo")
        assert status == 504 and _code(body) == "provider_timeout"
        took.append(t)
    print(f"\nU3 per-try timeout {PER_TRY}s measured: {[round(t, 3) for t in took]}")
    assert all(PER_TRY * 0.9 <= t <= PER_TRY * 1.1 for t in took), took


def test_before_first_byte_faults_are_retried_or_fall_back(rig):
    gp, fp = rig
    out = {}
    for mode in ("reset_before", "hang", "invalid_json", "error_200"):
        fp.mode, before = mode, fp.connections
        status, body, took = _chat(gp, "fb")
        out[mode] = (status, round(took, 3), fp.connections - before)
        assert status == 200, (mode, body[:300])
        assert "from backup" in json.loads(body)["choices"][0]["message"]["content"]
    fp.mode, before = "reset_before", fp.connections
    status, body, took = _chat(gp, "retry")
    out["reset_before_retry_same_target"] = (status, _code(body), fp.connections - before)
    print("\nU3 fallback:", out)
    assert fp.connections - before == 2  # retried once (max_attempts 2), then a stable error
    assert status == 502 and _code(body) == "provider_error"
    assert out["hang"][1] <= PER_TRY * 1.1 + 0.5


def test_stream_faults_after_first_byte_end_with_an_sse_error_event(rig, upstream):
    gp, fp = rig
    upstream.chunks, upstream.chunk_delay = 5, 0.05
    out = {}
    for mode in ("truncate_sse", "reset_after"):
        fp.mode, before = mode, fp.connections
        fp.after_bytes = 600  # past the response headers and the first events
        status, body, took = _chat(gp, "fb", stream=True)
        ev = _events(body)
        last = json.loads(ev[-1]) if ev and ev[-1] != "[DONE]" else {}
        out[mode] = (status, len(ev), last.get("error", {}).get("code"), fp.connections - before)
        assert status == 200, (mode, body[:300])
        assert "[DONE]" not in ev, mode
        assert last.get("error", {}).get("code") in ("provider_error", "provider_timeout"), (mode, ev[-3:])
        assert fp.connections - before == 1  # no retry or fallback once bytes went to the client
        assert "from backup" not in body.decode()
    print("\nU3/U7 stream:", out)


def test_stream_hang_before_first_byte_falls_back_and_slow_live_stream_survives(rig, upstream):
    gp, fp = rig
    fp.mode = "hang"
    status, body, took = _chat(gp, "fb", stream=True)
    text = "".join(c["delta"].get("content") or "" for e in _events(body)[:-1] for c in json.loads(e).get("choices", []))
    assert status == 200 and "from backup" in text, body[:300]
    assert _events(body)[-1] == "[DONE]"
    # slow trickle: ~1 byte every 5 ms for a ~1.5 KB stream → several seconds, longer than
    # read_timeout (0.5 s) and the per-try timeout (1 s), but never silent for long: not killed
    fp.mode, fp.trickle_bytes, fp.trickle_every = "trickle", 2, 0.005
    upstream.chunks, upstream.chunk_delay = 5, 0.0
    status, body, took = _chat(gp, "solo", stream=True)
    ev = _events(body)
    print(f"\nU6 slow live stream: {took:.2f}s, {len(ev)} events, last={ev[-1] if ev else None}")
    assert status == 200 and ev[-1] == "[DONE]", ev[-3:]
    assert took > PER_TRY * 1.5
    assert sum("part" in e for e in ev) == 5


def test_latency_under_timeout_succeeds(rig):
    gp, fp = rig
    fp.mode, fp.latency = "latency", 0.4
    status, body, took = _chat(gp, "solo")
    assert status == 200 and 0.4 <= took < PER_TRY, (status, took)
