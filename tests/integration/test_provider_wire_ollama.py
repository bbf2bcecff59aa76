"""The ollama provider against a fake Ollama on loopback serving recorded fixtures (NDJSON streams)."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.call import Target
from gateway.errors import ProviderError
from plugins.providers.ollama import OllamaConfig, OllamaProvider
from tests.fixtures.providers import FIXTURES, FakeUpstream, load_json, make_call, services_with


@pytest.fixture
async def upstream():
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def provider(upstream: FakeUpstream, http: aiohttp.ClientSession, **options) -> OllamaProvider:
    return OllamaProvider(OllamaConfig(base_url=upstream.url, **options), services_with(http))


def ndjson(name: str) -> list[bytes]:
    return [line + b"\n" for line in (FIXTURES / "ollama" / name).read_bytes().splitlines() if line.strip()]


TARGET = Target("local", "llama3.2")


async def test_chat_sends_native_api_chat_and_returns_an_sdk_valid_completion(upstream, http) -> None:
    fx = load_json("ollama", "chat_text.json")
    upstream.routes["POST /api/chat"] = upstream.json(fx["wire_response"])
    completion = await provider(upstream, http, options={"num_ctx": 8192}).chat(fx["openai_request"], TARGET, make_call({}))
    assert upstream.requests[0].json == fx["wire_request"]
    assert "Authorization" not in upstream.requests[0].headers  # no key configured, none sent
    ChatCompletion.model_validate(completion)
    assert completion["usage"]["total_tokens"] == 324


async def test_tool_call_round_trip_over_the_wire(upstream, http) -> None:
    fx = load_json("ollama", "chat_tools.json")
    upstream.routes["POST /api/chat"] = upstream.json(fx["wire_response"])
    completion = await provider(upstream, http).chat(fx["openai_request"], TARGET, make_call({}))
    assert upstream.requests[0].json == fx["wire_request"]
    call = ChatCompletion.model_validate(completion).choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_current_weather", '{"format":"celsius","location":"Berlin, DE"}')


async def test_ndjson_stream_yields_each_line_as_it_arrives(upstream, http) -> None:
    gate = asyncio.Event()
    upstream.routes["POST /api/chat"] = upstream.stream(ndjson("stream_text.ndjson"), "application/x-ndjson", gate=gate)
    body = {"messages": [{"role": "user", "content": "why blue?"}], "stream": True}
    stream = provider(upstream, http).chat_stream(body, TARGET, make_call(body))
    await asyncio.wait_for(stream.__anext__(), 2)
    assert (await asyncio.wait_for(stream.__anext__(), 2))["choices"][0]["delta"] == {"content": "The"}
    gate.set()
    rest = [c async for c in stream]
    for chunk in rest:
        ChatCompletionChunk.model_validate(chunk)
    assert upstream.requests[0].json["stream"] is True
    assert rest[-1]["usage"] == {"prompt_tokens": 26, "completion_tokens": 282, "total_tokens": 308}


async def test_a_missing_model_is_a_404_before_the_stream_starts(upstream, http) -> None:
    upstream.routes["POST /api/chat"] = upstream.json({"error": 'model "llama9" not found, try pulling it first'}, status=404)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with pytest.raises(ProviderError) as err:
        await provider(upstream, http).chat_stream(body, Target("local", "llama9"), make_call(body)).__anext__()
    assert (err.value.code, err.value.status) == ("invalid_model", 404) and "llama9" in err.value.message


async def test_an_unreachable_ollama_is_a_retryable_provider_error(http) -> None:
    dead = OllamaProvider(OllamaConfig(base_url="http://127.0.0.1:9"), services_with(http))
    with pytest.raises(ProviderError) as err:
        await dead.chat({"messages": [{"role": "user", "content": "hi"}]}, TARGET, make_call({}))
    assert err.value.code == "provider_error" and err.value.retryable


async def test_embeddings_use_api_embed_and_report_its_token_count(upstream, http) -> None:
    fx = load_json("ollama", "embeddings.json")
    upstream.routes["POST /api/embed"] = upstream.json(fx["wire_response"])
    result = await provider(upstream, http).embeddings(fx["openai_request"], Target("local", "all-minilm"), make_call({}))
    assert upstream.requests[0].json == fx["wire_request"]
    parsed = CreateEmbeddingResponse.model_validate(result)
    assert [d.index for d in parsed.data] == [0, 1] and parsed.usage.prompt_tokens == 16


async def test_model_list_comes_from_api_tags(upstream, http) -> None:
    fx = load_json("ollama", "models.json")
    upstream.routes["GET /api/tags"] = upstream.json(fx["wire_response"])
    assert await provider(upstream, http).list_models() == fx["models"]
