"""Gemini SSE events → OpenAI chunks, event by event, on recorded transcripts."""
from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from gateway.chunks import ChunkAccumulator
from gateway.errors import ProviderError
from plugins.providers.gemini.stream import GeminiStream
from tests.fixtures.providers import sse_events


def translate(name: str) -> list[dict]:
    translator = GeminiStream(model="gemini-x")
    chunks = [chunk for _, data in sse_events("gemini", name) for chunk in translator.feed(data)]
    return chunks + translator.finish()


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tools.sse"])
def test_every_chunk_is_a_valid_openai_chunk_and_the_last_carries_usage(name: str) -> None:
    chunks = translate(name)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])


def test_text_stream_yields_one_chunk_per_event_and_assembles_to_the_answer() -> None:
    translator = GeminiStream(model="m")
    per_event = [translator.feed(data) for _, data in sse_events("gemini", "stream_text.sse")]
    assert [len(c) for c in per_event] == [2, 1, 2]  # role+text, text, text+finish: nothing held back
    completion = ChunkAccumulator().extend([c for cs in per_event for c in cs] + translator.finish()).completion()
    assert completion["choices"][0]["message"]["content"] == "The sky is blue because of Rayleigh scattering."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17}
    assert completion["id"] == "Wm2RaNTzG8Kv1dkPj4bN4Qs"


def test_function_calls_become_indexed_tool_calls_and_thoughts_stay_out_of_the_text() -> None:
    completion = ChunkAccumulator().extend(translate("stream_tools.sse")).completion()
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "Checking both rooms."
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [
        ("find_lights", '{"room":"living"}'), ("find_lights", '{"room":"kitchen"}')]
    assert len({c["id"] for c in choice["message"]["tool_calls"]}) == 2
    assert choice["finish_reason"] == "tool_calls"
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


def test_a_stream_cut_before_finish_reason_is_an_error_not_a_silent_short_answer() -> None:
    translator = GeminiStream(model="m")
    translator.feed(sse_events("gemini", "stream_text.sse")[0][1])
    with pytest.raises(ProviderError, match="before a finishReason"):
        translator.finish()


def test_an_error_object_in_the_stream_raises_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="overloaded"):
        GeminiStream(model="m").feed({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
