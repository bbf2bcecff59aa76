"""The official OpenAI SDK, through a real gateway process, to fake Anthropic, Gemini and Ollama APIs.

The fakes serve the recorded fixtures on loopback; the client sees only OpenAI objects
(parsed by the SDK itself), whichever provider answered.
"""
from __future__ import annotations

import openai
import pytest

from tests.fixtures.gateway import base_config
from tests.fixtures.providers import FIXTURES, FakeUpstream, load_json, split_sse, sse_bytes


@pytest.fixture
async def upstream():
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


@pytest.fixture
def client(upstream, gateway_factory, tmp_path):
    config = base_config(
        tmp_path,
        providers={
            "anthropic": {"type": "anthropic", "api_key": "${ANTHROPIC_API_KEY:-}", "optional": True, "base_url": upstream.url},
            "gemini": {"type": "gemini", "api_key": "${GEMINI_API_KEY:-}", "optional": True, "base_url": upstream.url},
            "ollama": {"type": "ollama", "base_url": upstream.url},
        },
        models={
            "claude": {"targets": ["anthropic/claude-sonnet-4-20250514"]},
            "gemini-flash": {"targets": ["gemini/gemini-2.0-flash"]},
            "llama": {"targets": ["ollama/llama3.2"]},
        },
    )
    gw = gateway_factory(config, env={"ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "AIza-test"})
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)


def ndjson(name: str) -> list[bytes]:
    return [line + b"\n" for line in (FIXTURES / "ollama" / name).read_bytes().splitlines() if line.strip()]


async def test_a_claude_tool_call_reaches_the_sdk_as_an_openai_tool_call(upstream, client) -> None:
    fx = load_json("anthropic", "chat_tools.json")
    upstream.routes["POST /v1/messages"] = upstream.json(fx["wire_response"])
    req = {k: v for k, v in fx["openai_request"].items() if k != "model"}
    completion = await client.chat.completions.create(model="claude", **req)
    assert upstream.requests[0].json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    call = completion.choices[0].message.tool_calls[0]
    assert (call.function.name, completion.choices[0].finish_reason) == ("get_weather", "tool_calls")
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


@pytest.mark.parametrize(
    ("model", "route", "pieces", "text"),
    [
        ("claude", "POST /v1/messages", lambda: split_sse(sse_bytes("anthropic", "stream_text.sse")), "Hello!"),
        ("gemini-flash", "POST /v1beta/models/gemini-2.0-flash:streamGenerateContent", lambda: split_sse(sse_bytes("gemini", "stream_text.sse")),
         "The sky is blue because of Rayleigh scattering."),
        ("llama", "POST /api/chat", lambda: ndjson("stream_text.ndjson"), "The sky is blue."),
    ],
)
async def test_each_provider_streams_sdk_parsable_chunks_with_usage(upstream, client, model, route, pieces, text) -> None:
    upstream.routes[route] = upstream.stream(pieces(), "application/x-ndjson" if model == "llama" else "text/event-stream")
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_a_gemini_answer_reaches_the_sdk_as_a_chat_completion(upstream, client) -> None:
    fx = load_json("gemini", "chat_text.json")
    upstream.routes["POST /v1beta/models/gemini-2.0-flash:generateContent"] = upstream.json(fx["wire_response"])
    completion = await client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": "name?"}])
    assert completion.choices[0].message.content == '{"name": "Neko"}'
    assert completion.usage.total_tokens == 32


async def test_an_ollama_model_that_is_not_pulled_is_the_sdks_not_found_error(upstream, client) -> None:
    upstream.routes["POST /api/chat"] = upstream.json({"error": 'model "llama3.2" not found, try pulling it first'}, status=404)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])


async def test_an_anthropic_error_mid_stream_reaches_the_sdk_as_an_error_after_the_partial_text(upstream, client) -> None:
    upstream.routes["POST /v1/messages"] = upstream.stream(split_sse(sse_bytes("anthropic", "stream_error.sse")), "text/event-stream")
    stream = await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            text.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(text) == "Partial"
    assert len(upstream.requests) == 1  # bytes had reached the client: no second attempt
