"""X1 through real gateway processes: a private base_url stops start-up naming the key; an
upstream redirect to the metadata address is not followed; the allow-list lets a local one work."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import json
import urllib.error
import urllib.request
import pytest
import yaml

from gateway.netguard import ENV_ALLOW
from tests.fixtures.gateway import base_config


def post_json(url: str, body: dict, headers: dict | None = None, timeout: float = 20) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _env_without_allow() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != ENV_ALLOW}


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/v1", "http://0x7f.1/v1", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/"])
def test_serve_refuses_private_base_url(tmp_path, url):
    cfg = base_config(tmp_path, providers={"local": {"type": "openai", "api_key": "k", "base_url": url}},
                      models={"m": {"targets": ["local/x"]}})
    path = tmp_path / "ssrf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)], capture_output=True, text=True,
                         timeout=60, env=_env_without_allow(), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "providers.local.base_url:" in res.stderr


def test_ollama_default_needs_the_allow_list(tmp_path):
    cfg = base_config(tmp_path, providers={"ol": {"type": "ollama"}}, models={"m": {"targets": ["ol/llama3"]}})
    path = tmp_path / "ol.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = lambda env: subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", str(path)], capture_output=True,
                                     text=True, timeout=60, env=env, cwd=tmp_path)
    res = run(_env_without_allow())
    assert res.returncode != 0 and "providers.ol.base_url:" in res.stderr
    assert run({**_env_without_allow(), ENV_ALLOW: "localhost"}).returncode == 0
    cfg["providers"]["ol"]["allow_private"] = True
    path.write_text(yaml.safe_dump(cfg))
    assert run(_env_without_allow()).returncode == 0


class _Redirector(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        _Redirector.hits.append(self.path)
        self.send_response(307)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


def test_redirect_to_metadata_not_followed(tmp_path, gateway_factory):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        cfg = base_config(tmp_path, providers={"r": {"type": "openai", "api_key": "k", "base_url": f"http://127.0.0.1:{port}/v1"}},
                          models={"m": {"targets": ["r/x"], "max_attempts": 1}})
        gp = gateway_factory(cfg, env={ENV_ALLOW: "127.0.0.1/32"})
        t0 = time.monotonic()
        status, text = post_json(f"{gp.base_url}/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert status in (502, 503), text
        assert isinstance(json.loads(text)["error"]["code"], str)
        assert "169.254" not in text
        assert 1 <= len(_Redirector.hits) <= 3 and all(h == "/v1/chat/completions" for h in _Redirector.hits)
        assert time.monotonic() - t0 < 10
    finally:
        srv.shutdown()
