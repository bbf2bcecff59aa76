"""The shipped config/gateway.yaml, as `make run` starts it: every built-in middleware in one chain."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.fixtures.gateway import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.semantic  # the default chain loads the MiniLM model


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    port = free_port()
    env = {**os.environ, "WATCHLLM_PORT": str(port), "WATCHLLM_STORE_URL": f"sqlite:///{tmp / 'w.db'}"}
    key = subprocess.run([sys.executable, "-m", "gateway.cli", "keys", "create", "--project", "demo", "--config",
                          str(ROOT / "config/gateway.yaml")], env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert key.returncode == 0, key.stderr
    log = open(tmp / "gw.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(ROOT / "config/gateway.yaml")],
                            env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            assert proc.poll() is None, (tmp / "gw.log").read_text()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", key.stdout.strip().splitlines()[-1], tmp
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    shutil.rmtree(tmp, ignore_errors=True)


def test_default_chain_answers_masks_caches_meters_and_runs_tools(default_gateway):
    url, key, tmp = default_gateway
    c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    # DLP masks the email upstream and restores it for the client
    raw = c.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "write to ann@example.org"}])
    assert raw.parse().choices[0].message.content == "Mock answer to: write to ann@example.org"
    assert raw.headers["x-watchllm-cached"] == "false" and "x-ratelimit-limit" in {k.lower() for k in raw.headers}
    # the same question again is an exact cache hit
    again = c.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "write to ann@example.org"}])
    assert again.headers["x-watchllm-cached"] == "true" and again.headers["x-watchllm-cost-usd"] == "0.000000"
    # a card number is blocked before any provider sees it
    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "card 4111 1111 1111 1111"}])
    assert exc.value.code == "dlp_violation" and "4111" not in str(exc.value.body)
    # server-side tools: the gateway runs the calculator for the mock agent
    out = c.chat.completions.create(model="mock-agent", messages=[{"role": "user", "content": '[[call calculator {"expression": "6*7"}]]'}])
    assert "42" in out.choices[0].message.content
    # streaming through the whole chain
    text = "".join(ch.choices[0].delta.content or "" for ch in
                   c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "stream please"}], stream=True) if ch.choices)
    assert text == "Mock answer to: stream please"
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "watchllm_requests_total" in metrics and "ann@example.org" not in metrics
    # a bad key never gets through
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="lgw_proj_x_y", max_retries=0).models.list()
