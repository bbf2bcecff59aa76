"""The official OpenAI SDK pointed at WatchLLM by base_url alone: content, usage, headers, errors."""
from __future__ import annotations

import openai
import pytest


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused-by-router-only-config", max_retries=0)


def test_chat_completion_returns_content_usage_and_gateway_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": "hello gateway"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Mock answer to: hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert raw.headers["x-watchllm-provider"] == "mock"
    assert raw.headers["x-watchllm-cached"] == "false"
    assert float(raw.headers["x-watchllm-latency-ms"]) >= 0
    assert raw.headers["x-watchllm-cost-usd"] == "0.000000"  # the mock model has no price
    assert len(raw.headers["x-request-id"]) >= 16


def test_client_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=[{"role": "user", "content": "x"}], extra_headers={"x-request-id": "req-abc-123"}
    )
    assert raw.headers["x-request-id"] == "req-abc-123"


def test_streaming_yields_chunks_finish_reason_and_usage_when_asked(client):
    stream = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "stream me a reply"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock answer to: stream me a reply"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_without_include_usage_sends_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_embeddings_single_and_batch(client):
    one = client.embeddings.create(model="mock", input="hello")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 16
    batch = client.embeddings.create(model="mock", input=["a", "b", "c"])
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert batch.usage.prompt_tokens == 3


def test_legacy_completions(client):
    out = client.completions.create(model="mock", prompt="say hi")
    assert out.choices[0].text.startswith("Mock answer to: say hi")


def test_models_list_shows_configured_aliases(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["mock"]


def test_unknown_model_raises_not_found_with_stable_code(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 404
    assert exc.value.code == "invalid_model"
    assert exc.value.body["param"] == "model"


def test_missing_messages_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="mock", messages=[])
    assert exc.value.code == "invalid_request"


def test_upstream_failure_maps_to_502_and_timeout_to_504(gateway_factory, tmp_path):
    from tests.fixtures.gateway import base_config

    cfg = base_config(tmp_path, providers={"mock": {"type": "mock", "timeout": 0.3}}, models={
        "mock": {"targets": ["mock/mock-1"], "max_attempts": 1},
    })
    gw = gateway_factory(cfg)
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-status": "500"})
    assert exc.value.status_code == 502 and exc.value.code == "provider_error"
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-hang": "1"})
    assert exc.value.status_code == 504 and exc.value.code == "provider_timeout"


async def test_async_client_chat_and_stream(gateway):
    c = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
    out = await c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "async hi"}])
    assert out.choices[0].message.content == "Mock answer to: async hi"
    parts = []
    async for chunk in await c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "async s"}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == "Mock answer to: async s"
    await c.close()


def test_openai_provider_proxies_to_an_openai_compatible_upstream(gateway_factory, upstream, tmp_path):
    from tests.fixtures.gateway import base_config

    cfg = base_config(tmp_path, providers={"up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-upstream-secret"}},
                      models={"gpt-test": {"targets": ["up/real-model"]}})
    gw = gateway_factory(cfg)
    c = openai.OpenAI(base_url=gw.base_url, api_key="client-key", max_retries=0)
    out = c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], temperature=0.2)
    assert out.choices[0].message.content == "hello from upstream"
    assert upstream.requests[-1]["model"] == "real-model"
    assert upstream.requests[-1]["temperature"] == 0.2
    # the gateway's key goes upstream, never the client's
    assert upstream.headers[-1]["Authorization"] == "Bearer sk-upstream-secret"
    chunks = list(c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "part0 part1 part2 part3 part4 "
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}  # asked upstream for costs
    assert all(ch.usage is None for ch in chunks)  # ...but not shown to a client that did not ask
