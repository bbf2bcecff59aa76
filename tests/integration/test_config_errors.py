"""A bad config stops start-up with one clear message naming the file and the key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.gateway import base_config

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, cfg, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    import os

    return subprocess.run([sys.executable, "-m", "gateway.cli", *args, str(path)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=tmp_path, timeout=60)


CASES = [
    ("unknown top-level key", {"servr": {}}, "servr: unknown section"),
    ("unknown server key", {"server": {"prot": 1}}, "server.prot: unknown key"),
    ("wrong type", {"server": {"port": "eighty"}}, "server.port: expected an integer, got string 'eighty'"),
    ("unknown middleware", {"pipeline": ["router", "no_such_mw"]}, "pipeline[1].no_such_mw: unknown middleware 'no_such_mw'"),
    ("bad middleware option", {"pipeline": [{"router": {"backoff_base_ms": "fast"}}]}, "pipeline[0].router.backoff_base_ms: expected a number"),
    ("unknown provider type", {"providers": {"x": {"type": "nope"}}}, "providers.x: unknown provider 'nope'"),
    ("missing provider key", {"providers": {"oa": {"type": "openai", "api_key": ""}}}, "providers.oa.api_key: provider 'openai' needs an API key"),
    ("target to unknown provider", {"models": {"m": {"targets": ["ghost/model"]}}}, "models.m.targets[0]: unknown provider 'ghost'"),
    ("target without slash", {"models": {"m": {"targets": ["justmodel"]}}}, "models.m.targets[0]: expected 'provider/model'"),
    ("unknown fallback", {"models": {"m": {"targets": ["mock/a"], "fallbacks": ["zz"]}}}, "models.m.fallbacks[0]: unknown model alias 'zz'"),
    ("bad strategy", {"models": {"m": {"targets": ["mock/a"], "strategy": "best"}}}, "models.m.strategy: expected one of"),
    ("unset env var", {"store": {"url": "${WATCHLLM_TEST_UNSET_VAR}"}}, "store.url: environment variable WATCHLLM_TEST_UNSET_VAR is not set"),
]


@pytest.mark.parametrize("name,patch,expected", CASES, ids=[c[0] for c in CASES])
def test_config_check_names_the_key(tmp_path, name, patch, expected):
    cfg = base_config(tmp_path)
    for k, v in patch.items():
        if k in cfg and isinstance(cfg[k], dict) and isinstance(v, dict) and k not in ("models",):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    res = _check(tmp_path, cfg, "config", "check")
    assert res.returncode != 0
    assert "bad.yaml: " in res.stderr
    assert expected in res.stderr, res.stderr


def test_invalid_yaml_reports_the_line(tmp_path):
    res = _check(tmp_path, "server:\n  port: [1, 2\n", "config", "check")
    assert res.returncode != 0 and "line 3" in res.stderr and "invalid YAML" in res.stderr


def test_env_interpolation_with_default_keeps_yaml_types(tmp_path):
    cfg = base_config(tmp_path, server={"port": "${WATCHLLM_TEST_PORT:-9123}", "workers": 1})
    res = _check(tmp_path, cfg, "config", "check")
    assert res.returncode == 0, res.stderr
    res = _check(tmp_path, cfg, "config", "check", env={"WATCHLLM_TEST_PORT": "not-a-port"})
    assert res.returncode != 0 and "server.port: expected an integer" in res.stderr


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path, pipeline=["nope"])))
    res = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "pipeline[0].nope: unknown middleware" in res.stderr


def test_shipped_default_config_is_valid():
    res = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", str(ROOT / "config/gateway.yaml")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_optional_provider_without_key_is_disabled_not_fatal(tmp_path):
    cfg = base_config(tmp_path, providers={"mock": {"type": "mock"}, "oa": {"type": "openai", "optional": True, "api_key": ""}},
                      models={"mock": {"targets": ["mock/m"]}, "gpt": {"targets": ["oa/gpt-4o"]}})
    res = _check(tmp_path, cfg, "config", "check")
    assert res.returncode == 0, res.stderr
    assert "disabled): oa" in res.stdout
