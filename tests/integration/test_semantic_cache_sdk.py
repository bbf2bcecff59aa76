"""Through the real gateway process and the OpenAI SDK: hits look like real answers and streams."""
from __future__ import annotations

import openai
import pytest

from tests.fixtures.gateway import base_config


def _cfg(tmp_path, **cache):
    return base_config(tmp_path, providers={"mock": {"type": "mock", "reply": "Paris is the capital of France, on the Seine."}},
                       pipeline=[{"semantic_cache": {"semantic": False, **cache}}, {"router": {}}])


def test_a_cached_answer_replays_through_the_sdk_as_a_real_stream(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    client = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    first = client.chat.completions.with_raw_response.create(model="mock", messages=msgs)
    assert first.headers["x-watchllm-cached"] == "false"
    answer = first.parse().choices[0].message.content

    raw = client.chat.completions.with_raw_response.create(model="mock", messages=msgs, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-watchllm-cached"] == "true"
    assert int(raw.headers["x-watchllm-tokens-saved"]) > 0
    assert raw.headers["x-watchllm-provider"] == "cache"
    assert raw.headers["x-watchllm-cost-usd"] == "0.000000"
    chunks = list(raw.parse())
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 4 and "".join(content) == answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert chunks[0].id != first.parse().id


def test_a_json_hit_has_a_fresh_id_and_the_bypass_header_goes_upstream(gateway_factory, tmp_path):
    gw = gateway_factory(_cfg(tmp_path))
    client = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    a = client.chat.completions.create(model="mock", messages=msgs)
    hit = client.chat.completions.with_raw_response.create(model="mock", messages=msgs)
    assert hit.headers["x-watchllm-cached"] == "true" and hit.parse().id != a.id
    assert hit.parse().choices[0].message.content == a.choices[0].message.content
    bypass = client.chat.completions.with_raw_response.create(model="mock", messages=msgs, extra_headers={"x-watchllm-cache": "bypass"})
    assert bypass.headers["x-watchllm-cached"] == "false"


@pytest.mark.semantic
def test_a_paraphrase_hits_and_a_negation_does_not_in_the_running_gateway(gateway_factory, tmp_path):
    cfg = base_config(tmp_path, pipeline=[{"semantic_cache": {}}, {"router": {}}])  # the mock echoes the prompt
    gw = gateway_factory(cfg, start=False).start(timeout=120)  # the model loads at start-up
    client = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)

    def ask(text):
        raw = client.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": text}])
        return raw.headers["x-watchllm-cached"], raw.parse().choices[0].message.content

    _, first = ask("How do I reset my password?")
    cached, text = ask("How can I reset my password?")
    assert cached == "true" and text == first
    cached, _ = ask("How do I not reset my password?")
    assert cached == "false"
