"""Ollama NDJSON lines → OpenAI chunks, line by line, on recorded transcripts."""
from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from gateway.chunks import ChunkAccumulator
from gateway.errors import ProviderError
from plugins.providers.ollama.stream import OllamaStream
from tests.fixtures.providers import ndjson_lines


def translate(name: str) -> list[dict]:
    translator = OllamaStream(model="m")
    chunks = [c for line in ndjson_lines("ollama", name) for c in translator.feed(line)]
    assert translator.finished
    return chunks


@pytest.mark.parametrize("name", ["stream_text.ndjson", "stream_tools.ndjson", "stream_length.ndjson"])
def test_every_chunk_is_a_valid_openai_chunk_and_the_last_carries_usage(name: str) -> None:
    chunks = translate(name)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert len({c["id"] for c in chunks}) == 1


def test_each_line_becomes_a_chunk_as_it_arrives_and_the_stream_assembles_to_the_answer() -> None:
    translator = OllamaStream(model="m")
    per_line = [translator.feed(line) for line in ndjson_lines("ollama", "stream_text.ndjson")]
    assert [len(c) for c in per_line] == [2, 1, 1, 2]  # role+text, text, text, finish+usage
    completion = ChunkAccumulator().extend([c for cs in per_line for c in cs]).completion()
    assert completion["choices"][0]["message"]["content"] == "The sky is blue."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 26, "completion_tokens": 282, "total_tokens": 308}


def test_streamed_tool_calls_get_distinct_ids_and_increasing_indices() -> None:
    completion = ChunkAccumulator().extend(translate("stream_tools.ndjson")).completion()
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_current_weather", '{"city":"Toronto"}'), ("get_current_weather", '{"city":"Paris"}')]
    assert len({c["id"] for c in calls}) == 2
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_a_length_stop_reads_as_finish_reason_length() -> None:
    completion = ChunkAccumulator().extend(translate("stream_length.ndjson")).completion()
    assert completion["choices"][0]["finish_reason"] == "length"


def test_an_error_line_mid_stream_raises_after_the_text_already_sent() -> None:
    translator = OllamaStream(model="m")
    lines = ndjson_lines("ollama", "stream_error.ndjson")
    assert translator.feed(lines[0])[-1]["choices"][0]["delta"] == {"content": "Part"}
    with pytest.raises(ProviderError, match="unexpected EOF"):
        translator.feed(lines[1])
