"""Start-up, health, readiness, graceful shutdown, and a third-party plugin loaded from YAML alone."""
from __future__ import annotations

import shutil

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.fixtures.gateway import base_config

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "thirdparty_plugin"


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_reports_version_uptime_and_components(gateway):
    status, body = _get(f"{gateway.url}/health")
    assert status == 200 and body["status"] == "ok"
    assert body["version"] and body["uptime_sec"] >= 0 and body["timestamp"] > 0
    assert body["components"]["store"] == "ok"
    status, body = _get(f"{gateway.url}/ready")
    assert status == 200 and body == {"ready": True}


def test_health_is_503_naming_the_store_when_the_database_is_gone(gateway_factory, tmp_path):
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    gw = gateway_factory(base_config(tmp_path, store={"url": f"sqlite:///{db_dir / 'w.db'}"}))
    assert _get(f"{gw.url}/health")[0] == 200
    shutil.rmtree(db_dir)  # the database, its WAL and the usage journal
    status, body = _get(f"{gw.url}/health")
    assert status == 503 and body["failing"] == ["store"]


def test_unknown_route_and_method_get_openai_style_errors(gateway):
    status, body = _get(f"{gateway.url}/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = _get(f"{gateway.base_url}/chat/completions")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, server={"max_body_bytes": 2048, "shutdown_timeout": 5}))
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x" * 5000}])
    assert exc.value.status_code == 413 and exc.value.code == "payload_too_large"


@pytest.mark.parametrize("size, status", [(1500, 200), (5000, 413)])
def test_a_chunked_body_is_bounded_without_a_content_length(gateway_factory, tmp_path, size, status):
    # No Content-Length to refuse up front: the limit holds while (or after) the body is read.
    import socket

    gw = gateway_factory(base_config(tmp_path, server={"max_body_bytes": 2048, "shutdown_timeout": 5}))
    body = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "x" * (size - 60)}]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700]) for i in range(0, len(body), 700))
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(raw)  # one write: the whole body is there when the handler starts
        resp = b""
        while chunk := s.recv(65536):
            resp += chunk
    head, _, payload = resp.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), head
    if status == 413:
        assert b'"payload_too_large"' in payload


def test_sigterm_drains_in_flight_requests_then_exits_zero(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path))
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0, timeout=20)
    results: list[str] = []

    def slow_request() -> None:
        out = c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "slow"}],
                                        extra_headers={"x-mock-latency-ms": "1500"})
        results.append(out.choices[0].message.content)

    threads = [threading.Thread(target=slow_request) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the requests are in flight
    started = time.monotonic()
    code = gw.stop(timeout=20)
    for t in threads:
        t.join(5)
    assert code == 0
    assert results == ["Mock answer to: slow"] * 3
    assert time.monotonic() - started >= 0.5  # it waited for them


@pytest.fixture(scope="module")
def installed_thirdparty_plugin():
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(PLUGIN_DIR)]
    subprocess.run(pip, check=True, timeout=180, capture_output=True)
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "watchllm-shout"], timeout=120, capture_output=True)


def test_third_party_plugin_runs_in_the_chain_from_yaml_alone(installed_thirdparty_plugin, gateway_factory, tmp_path):
    listing = subprocess.run([sys.executable, "-m", "gateway.cli", "plugins", "list"], capture_output=True, text=True, timeout=60)
    assert "shout" in listing.stdout and "watchllm-shout 0.0.1" in listing.stdout
    gw = gateway_factory(base_config(tmp_path, pipeline=[{"shout": {"tag": "loud"}}, "router"]))
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "hello"}])
    assert raw.headers["x-shout"] == "loud"
    assert raw.parse().choices[0].message.content == "MOCK ANSWER TO: HELLO"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}], stream=True) if ch.choices)
    assert streamed == "MOCK ANSWER TO: HI"


def test_models_list_requires_a_valid_key_when_auth_is_in_the_pipeline(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, pipeline=["auth", "router"]))
    bad = openai.OpenAI(base_url=gw.base_url, api_key="lgw_proj_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.code == "invalid_api_key"
    key = subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "create", "--project", "demo", "--config", str(gw.config_path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout.strip().splitlines()[-1]
    good = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    assert [m.id for m in good.models.list()] == ["mock"]
    assert good.chat.completions.create(model="mock", messages=[{"role": "user", "content": "k"}]).choices[0].message.content
