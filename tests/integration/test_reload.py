"""Hot reload: SIGHUP / POST /api/admin/reload swap the chain with no failed request."""
from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from tests.fixtures.gateway import base_config


def post_chat(url: str, model: str = "mock") -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/v1/chat/completions", method="POST", headers={"content-type": "application/json"},
                                 data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return -1, repr(exc)


def models(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as r:
        return [m["id"] for m in json.loads(r.read())["data"]]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_ten_reloads_under_load_fail_no_request(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, providers={"mock": {"type": "mock", "latency_ms": 20, "reply": "gen-0"}})
    gw = gateway_factory(cfg)
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    def load() -> None:
        while not stop.is_set():
            results.append(post_chat(gw.url))

    workers = [threading.Thread(target=load) for _ in range(8)]
    for w in workers:
        w.start()
    try:
        for i in range(1, 11):
            cfg = {**cfg, "providers": {"mock": {"type": "mock", "latency_ms": 20, "reply": f"gen-{i}"}},
                   "models": {"mock": {"targets": ["mock/mock-1"]}, f"extra{i}": {"targets": ["mock/mock-1"]}}}
            gw.config_path.write_text(yaml.safe_dump({**cfg, "server": gw.config["server"]}))
            gw.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: f"extra{i}" in models(gw.url)), gw.log()
            time.sleep(0.1)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    assert len(results) > 100
    answers = {text for _, text in results}
    assert "gen-0" in answers and "gen-10" in answers and len(answers) >= 5
    assert post_chat(gw.url) == (200, "gen-10")
    assert gw.proc.poll() is None


def test_a_bad_config_is_refused_and_the_old_one_stays(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, providers={"mock": {"type": "mock", "reply": "old"}}))
    gw.config_path.write_text(yaml.safe_dump({**gw.config, "pipeline": ["no_such_middleware", "router"]}))
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in gw.log()), gw.log()
    assert post_chat(gw.url) == (200, "old")
    # a server-section change needs a restart, not a reload
    gw.config_path.write_text(yaml.safe_dump({**gw.config, "server": {**gw.config["server"], "max_headers": 7}}))
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "needs a restart" in gw.log()), gw.log()
    assert post_chat(gw.url) == (200, "old") and gw.proc.poll() is None


def test_reload_route_needs_an_admin_token(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path))
    req = urllib.request.Request(f"{gw.url}/api/admin/reload", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code in (401, 403)
