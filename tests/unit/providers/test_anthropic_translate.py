"""Anthropic Messages ⇄ OpenAI chat, JSON bodies, checked against recorded fixtures both ways."""
from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion

from gateway.errors import GatewayError
from plugins.providers.anthropic.translate import from_messages_response, to_messages_request, usage_from_anthropic
from tests.fixtures.providers import load_json, stable


@pytest.mark.parametrize("name", ["chat_text.json", "chat_tools.json"])
def test_openai_request_becomes_the_recorded_anthropic_request(name: str) -> None:
    fx = load_json("anthropic", name)
    wire = to_messages_request(fx["openai_request"], model=fx["target_model"], default_max_tokens=4096, stream=False)
    assert wire == fx["wire_request"]


@pytest.mark.parametrize("name", ["chat_text.json", "chat_tools.json"])
def test_recorded_anthropic_reply_becomes_a_valid_openai_completion(name: str) -> None:
    fx = load_json("anthropic", name)
    completion = from_messages_response(fx["wire_response"], model=fx["target_model"])
    assert stable(completion) == fx["openai_response"]
    ChatCompletion.model_validate(completion)


def test_tool_use_reply_reads_back_as_a_tool_call_with_json_arguments() -> None:
    completion = from_messages_response(load_json("anthropic", "chat_tools.json")["wire_response"], model="m")
    call = ChatCompletion.model_validate(completion).choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"London","unit":"celsius"}'


def test_tool_results_open_the_next_user_turn_before_its_text() -> None:
    wire = load_json("anthropic", "chat_tools.json")["wire_request"]
    last = wire["messages"][-1]
    assert [b["type"] for b in last["content"]] == ["tool_result", "tool_result", "text"]
    assert [m["role"] for m in wire["messages"]] == ["user", "assistant", "user"]


def test_streaming_request_asks_for_a_stream() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert to_messages_request(body, model="m", default_max_tokens=10, stream=True)["stream"] is True


def test_max_tokens_is_always_sent_because_anthropic_requires_it() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert to_messages_request(body, model="m", default_max_tokens=333, stream=False)["max_tokens"] == 333
    body["max_completion_tokens"] = 12
    assert to_messages_request(body, model="m", default_max_tokens=333, stream=False)["max_tokens"] == 12


def test_openai_temperature_above_one_is_clamped_to_anthropics_range() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 1.7}
    assert to_messages_request(body, model="m", default_max_tokens=10, stream=False)["temperature"] == 1.0


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("required", {"type": "any"}), ("none", {"type": "none"}), ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"})],
)
def test_tool_choice_maps_to_anthropic_names(choice, expected) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}
    assert to_messages_request(body, model="m", default_max_tokens=10, stream=False)["tool_choice"] == expected


def test_http_image_urls_are_passed_as_url_sources() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]}]}
    block = to_messages_request(body, model="m", default_max_tokens=10, stream=False)["messages"][0]["content"][0]
    assert block == {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{oops"}}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages"),
    ],
)
def test_requests_anthropic_cannot_serve_are_400_naming_the_parameter(body, param) -> None:
    with pytest.raises(GatewayError) as err:
        to_messages_request(body, model="m", default_max_tokens=10, stream=False)
    assert err.value.status == 400 and err.value.param == param


def test_cached_input_counts_in_prompt_tokens_and_is_reported_as_cached() -> None:
    usage = usage_from_anthropic({"input_tokens": 5, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 7})
    assert usage == {"prompt_tokens": 125, "completion_tokens": 7, "total_tokens": 132, "prompt_tokens_details": {"cached_tokens": 100}}


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")])
def test_stop_reasons_map_to_openai_finish_reasons(stop: str, finish: str) -> None:
    resp = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {}}
    assert from_messages_response(resp, model="m")["choices"][0]["finish_reason"] == finish
