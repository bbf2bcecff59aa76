"""The gemini provider against a fake Gemini API on loopback serving recorded fixtures.

Checks the URL (model in the path, ``alt=sse`` for streams), the key header (never in the
URL), the body in Gemini's format, and that results validate as OpenAI SDK objects.
"""
from __future__ import annotations

import asyncio
import base64
import struct

import aiohttp
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.call import Target
from gateway.errors import GatewayError, ProviderError
from plugins.providers.gemini import GeminiConfig, GeminiProvider
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


def provider(upstream: FakeUpstream, http: aiohttp.ClientSession, **options) -> GeminiProvider:
    return GeminiProvider(GeminiConfig(api_key="AIza-test", base_url=upstream.url, **options), services_with(http))


async def test_chat_with_tools_posts_generate_content_and_returns_an_sdk_valid_completion(upstream, http) -> None:
    fx = load_json("gemini", "chat_tools.json")
    upstream.routes["POST /v1beta/models/gemini-2.5-flash:generateContent"] = upstream.json(fx["wire_response"])
    completion = await provider(upstream, http).chat(fx["openai_request"], Target("gem", "gemini-2.5-flash"), make_call({}))
    sent = upstream.requests[0]
    assert sent.json == fx["wire_request"]
    assert sent.headers["x-goog-api-key"] == "AIza-test" and "key" not in sent.query
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.tool_calls[0].function.arguments == '{"brightness":25,"color_temp":"warm"}'
    assert parsed.usage.completion_tokens_details.reasoning_tokens == 80


async def test_stream_asks_for_sse_and_yields_chunks_as_events_arrive(upstream, http) -> None:
    gate = asyncio.Event()
    pieces = split_sse(sse_bytes("gemini", "stream_text.sse"))
    upstream.routes["POST /v1beta/models/gemini-2.0-flash:streamGenerateContent"] = upstream.stream(pieces, "text/event-stream", gate=gate)
    body = {"messages": [{"role": "user", "content": "why blue?"}], "stream": True}
    stream = provider(upstream, http).chat_stream(body, Target("gem", "gemini-2.0-flash"), make_call(body))
    first = await asyncio.wait_for(stream.__anext__(), 2)
    second = await asyncio.wait_for(stream.__anext__(), 2)
    assert second["choices"][0]["delta"] == {"content": "The"}  # before the upstream sent event two
    gate.set()
    chunks = [first, second] + [c async for c in stream]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert upstream.requests[0].query == {"alt": "sse"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "The sky is blue because of Rayleigh scattering."
    assert chunks[-1]["usage"]["total_tokens"] == 17


async def test_a_rate_limit_raises_before_the_stream_yields_with_the_retry_delay(upstream, http) -> None:
    fx = load_json("gemini", "errors.json")["cases"][0]
    upstream.routes["POST /v1beta/models/gemini-2.0-flash:streamGenerateContent"] = upstream.json(fx["body"], status=429)
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    stream = provider(upstream, http).chat_stream(body, Target("gem", "gemini-2.0-flash"), make_call(body))
    with pytest.raises(ProviderError) as err:
        await stream.__anext__()
    assert err.value.code == "rate_limit_exceeded" and err.value.retry_after == 37


async def test_a_stream_that_closes_without_finish_reason_is_an_error(upstream, http) -> None:
    pieces = split_sse(sse_bytes("gemini", "stream_text.sse"))[:2]
    upstream.routes["POST /v1beta/models/gemini-2.0-flash:streamGenerateContent"] = upstream.stream(pieces, "text/event-stream")
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with pytest.raises(ProviderError, match="finishReason"):
        async for _ in provider(upstream, http).chat_stream(body, Target("gem", "gemini-2.0-flash"), make_call(body)):
            pass


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_embeddings_batch_to_gemini_and_return_openai_embeddings(upstream, http, encoding: str) -> None:
    fx = load_json("gemini", "embeddings.json")
    upstream.routes["POST /v1beta/models/text-embedding-004:batchEmbedContents"] = upstream.json(fx["wire_response"])
    body = {**fx["openai_request"], "encoding_format": encoding}
    result = await provider(upstream, http).embeddings(body, Target("gem", "text-embedding-004"), make_call(body))
    assert upstream.requests[0].json == fx["wire_request"]
    if encoding == "base64":  # what the OpenAI SDK asks for by default; it decodes float32 before validating
        for item in result["data"]:
            raw = base64.b64decode(item["embedding"])
            item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    parsed = CreateEmbeddingResponse.model_validate(result)
    assert parsed.data[0].embedding == pytest.approx(fx["wire_response"]["embeddings"][0]["values"], rel=1e-6)


async def test_token_arrays_are_refused_for_embeddings(upstream, http) -> None:
    with pytest.raises(GatewayError) as err:
        await provider(upstream, http).embeddings({"input": [[1, 2, 3]]}, Target("gem", "e"), make_call({}))
    assert err.value.status == 400


async def test_model_list_follows_pages_and_keeps_chat_and_embedding_models(upstream, http) -> None:
    fx = load_json("gemini", "models.json")
    pages = iter(fx["pages"])

    async def listing(request):
        return await upstream.json(next(pages))(request)

    upstream.routes["GET /v1beta/models"] = listing
    assert await provider(upstream, http).list_models() == fx["models"]
    assert upstream.requests[1].query["pageToken"] == "page2"
