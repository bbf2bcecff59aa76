"""Anthropic SSE events → OpenAI chunks, event by event, on recorded transcripts."""
from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from gateway.chunks import ChunkAccumulator
from gateway.errors import ProviderError
from plugins.providers.anthropic.provider import error_from_response
from plugins.providers.anthropic.stream import AnthropicStream
from tests.fixtures.providers import load_json, sse_events


def translate(name: str) -> list[dict]:
    translator = AnthropicStream(model="claude-x")
    return [chunk for event, data in sse_events("anthropic", name) for chunk in translator.feed(event, data)]


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tools.sse"])
def test_every_chunk_is_a_valid_openai_chunk_and_the_last_carries_usage(name: str) -> None:
    chunks = translate(name)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])


def test_text_stream_assembles_to_the_reply_with_final_usage() -> None:
    completion = ChunkAccumulator().extend(translate("stream_text.sse")).completion()
    assert completion["id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert completion["choices"][0]["message"]["content"] == "Hello!"
    assert completion["choices"][0]["finish_reason"] == "stop"
    # output_tokens in message_delta is cumulative: 15, not 1 + 15
    assert completion["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}


def test_each_text_delta_becomes_its_own_chunk_as_it_arrives() -> None:
    translator = AnthropicStream(model="m")
    events = sse_events("anthropic", "stream_text.sse")
    produced = [translator.feed(e, d) for e, d in events]
    deltas = [c[0]["choices"][0]["delta"].get("content") for c in produced if c and c[0]["choices"]]
    assert deltas == ["", "Hello", "!", None]  # role, two deltas, finish


def test_tool_use_stream_becomes_tool_call_deltas_with_streamed_arguments() -> None:
    chunks = translate("stream_tools.sse")
    completion = ChunkAccumulator().extend(chunks).completion()
    message = completion["choices"][0]["message"]
    assert message["content"] == "Okay, let's check the weather."
    assert message["tool_calls"] == [
        {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}'}}
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}
    first_tool = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert first_tool["choices"][0]["delta"]["tool_calls"][0]["index"] == 0  # OpenAI indexes tool calls from 0


def test_mid_stream_overloaded_error_raises_a_retryable_provider_error_after_the_partial_text() -> None:
    translator = AnthropicStream(model="m")
    seen: list[dict] = []
    with pytest.raises(ProviderError) as err:
        for event, data in sse_events("anthropic", "stream_error.sse"):
            seen.extend(translator.feed(event, data))
    assert [c["choices"][0]["delta"].get("content") for c in seen if c["choices"]][-1] == "Partial"
    assert err.value.code == "provider_error" and err.value.retryable and "Overloaded" in err.value.message
    assert not translator.finished


@pytest.mark.parametrize("case", load_json("anthropic", "errors.json")["cases"], ids=lambda c: str(c["status"]))
def test_anthropic_error_statuses_map_to_gateway_codes(case: dict) -> None:
    import orjson

    exc = error_from_response(case["status"], orjson.dumps(case["body"]), case["headers"], "claude")
    assert (exc.code, exc.status, exc.retryable) == (case["code"], case["http"], case["retryable"])
    assert exc.context_window == case.get("context_window", False)
    assert exc.retry_after == case.get("retry_after")
    assert exc.message.startswith("claude: ")
