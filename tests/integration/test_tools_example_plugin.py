"""plugins/examples/watchllm-redact-answer: pip-installed, run from YAML in a real gateway."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.fixtures.gateway import base_config

PKG = Path(__file__).resolve().parents[2] / "plugins" / "examples" / "watchllm-redact-answer"


@pytest.fixture(scope="module")
def installed_example():
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(PKG)]
    subprocess.run(pip, check=True, timeout=180, capture_output=True)
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "watchllm-redact-answer"], timeout=120, capture_output=True)


def test_example_package_passes_its_own_tests(installed_example):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=PKG,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_example_middleware_runs_from_yaml(installed_example, gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, pipeline=[{"redact_answer": {"words": ["answer"], "mask": "[redacted]"}}, "router"]))
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "hello"}])
    assert raw.parse().choices[0].message.content == "Mock [redacted] to: hello"
    assert raw.headers["x-redacted"] == "1"
    stream = c.chat.completions.create(model="mock", stream=True, messages=[{"role": "user", "content": "an answer please"}],
                                       extra_headers={"x-mock-chunks": "20"})
    text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == "Mock [redacted] to: an [redacted] please"
