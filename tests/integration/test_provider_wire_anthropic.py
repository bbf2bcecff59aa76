"""The anthropic provider against a fake Anthropic API on loopback serving recorded fixtures.

Checks what goes over the wire (path, headers, body in Anthropic's format) and that what
comes back is an object the OpenAI SDK's own types accept.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.call import Target
from gateway.errors import ProviderError
from plugins.providers.anthropic import AnthropicConfig, AnthropicProvider
from tests.fixtures.providers import FakeUpstream, load_json, make_call, services_with, split_sse, sse_bytes


@pytest.fixture
async def upstream():
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def provider(upstream: FakeUpstream, http: aiohttp.ClientSession, **options) -> AnthropicProvider:
    config = AnthropicConfig(api_key="sk-ant-test", base_url=upstream.url, **options)
    return AnthropicProvider(config, services_with(http))


TARGET = Target("claude", "claude-sonnet-4-20250514")


async def test_chat_with_tools_sends_anthropic_format_and_returns_an_sdk_valid_completion(upstream, http) -> None:
    fx = load_json("anthropic", "chat_tools.json")
    upstream.routes["POST /v1/messages"] = upstream.json(fx["wire_response"])
    completion = await provider(upstream, http).chat(fx["openai_request"], TARGET, make_call(fx["openai_request"]))
    sent = upstream.requests[0]
    assert sent.json == fx["wire_request"]
    assert sent.headers["x-api-key"] == "sk-ant-test" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].finish_reason == "tool_calls"
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"


async def test_stream_yields_the_first_chunk_before_the_upstream_has_sent_the_rest(upstream, http) -> None:
    gate = asyncio.Event()
    pieces = split_sse(sse_bytes("anthropic", "stream_tools.sse"))
    upstream.routes["POST /v1/messages"] = upstream.stream(pieces, "text/event-stream", gate=gate)
    body = {"messages": [{"role": "user", "content": "weather?"}], "stream": True}
    stream = provider(upstream, http).chat_stream(body, TARGET, make_call(body))
    first = await asyncio.wait_for(stream.__anext__(), 2)  # the upstream is still holding the rest
    assert first["choices"][0]["delta"]["role"] == "assistant"
    gate.set()
    chunks = [first] + [c async for c in stream]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert upstream.requests[0].json["stream"] is True
    assert chunks[-1]["usage"] == {"prompt_tokens": 572, "completion_tokens": 89, "total_tokens": 661, "prompt_tokens_details": {"cached_tokens": 100}}


async def test_an_error_status_raises_before_the_stream_yields_anything(upstream, http) -> None:
    body = {"error": {"type": "overloaded_error", "message": "Overloaded"}, "type": "error"}
    upstream.routes["POST /v1/messages"] = upstream.json(body, status=529)
    req = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    stream = provider(upstream, http).chat_stream(req, TARGET, make_call(req))
    with pytest.raises(ProviderError) as err:
        await stream.__anext__()
    assert err.value.retryable and err.value.upstream_status == 529 and err.value.status == 502


async def test_a_mid_stream_error_event_ends_the_stream_with_a_provider_error(upstream, http) -> None:
    upstream.routes["POST /v1/messages"] = upstream.stream(split_sse(sse_bytes("anthropic", "stream_error.sse")), "text/event-stream")
    req = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    got: list[dict] = []
    with pytest.raises(ProviderError, match="Overloaded"):
        async for chunk in provider(upstream, http).chat_stream(req, TARGET, make_call(req)):
            got.append(chunk)
    assert got[-1]["choices"][0]["delta"] == {"content": "Partial"}


async def test_a_client_that_stops_reading_closes_the_upstream_connection(upstream, http) -> None:
    gate = asyncio.Event()
    upstream.routes["POST /v1/messages"] = upstream.stream(split_sse(sse_bytes("anthropic", "stream_text.sse")), "text/event-stream", gate=gate)
    req = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    stream = provider(upstream, http).chat_stream(req, TARGET, make_call(req))
    await stream.__anext__()
    await stream.aclose()
    gate.set()
    for _ in range(50):
        if upstream.disconnects:
            break
        await asyncio.sleep(0.02)
    assert upstream.disconnects == 1


async def test_a_hung_upstream_is_cut_at_the_target_timeout(upstream, http) -> None:
    upstream.routes["POST /v1/messages"] = upstream.hang()
    req = {"messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    with pytest.raises(ProviderError) as err:
        await provider(upstream, http).chat(req, Target("claude", "m", timeout=1.0), make_call(req))
    assert err.value.code == "provider_timeout" and err.value.retryable
    assert 0.9 <= time.perf_counter() - started <= 1.1  # the issue asks for ±10%


async def test_model_list_comes_from_the_models_endpoint(upstream, http) -> None:
    fx = load_json("anthropic", "models.json")
    upstream.routes["GET /v1/models"] = upstream.json(fx["wire_response"])
    assert await provider(upstream, http).list_models() == fx["models"]
    assert await provider(upstream, http, models=["pinned"]).list_models() == ["pinned"]
