"""Gemini generateContent ⇄ OpenAI chat, JSON bodies, checked against recorded fixtures both ways."""
from __future__ import annotations

import orjson
import pytest
from openai.types.chat import ChatCompletion

from gateway.errors import GatewayError
from plugins.providers.gemini.provider import error_from_response
from plugins.providers.gemini.schema import to_gemini_schema
from plugins.providers.gemini.translate import from_generate_response, to_generate_request
from tests.fixtures.providers import load_json, stable


@pytest.mark.parametrize("name", ["chat_text.json", "chat_tools.json"])
def test_openai_request_becomes_the_recorded_gemini_request(name: str) -> None:
    fx = load_json("gemini", name)
    assert to_generate_request(fx["openai_request"]) == fx["wire_request"]


def test_recorded_text_reply_becomes_a_valid_openai_completion() -> None:
    fx = load_json("gemini", "chat_text.json")
    completion = from_generate_response(fx["wire_response"], model=fx["target_model"])
    assert stable(completion) == fx["openai_response"]
    ChatCompletion.model_validate(completion)


def test_recorded_function_call_reply_becomes_a_tool_call_with_json_arguments_and_usage() -> None:
    fx = load_json("gemini", "chat_tools.json")
    completion = from_generate_response(fx["wire_response"], model=fx["target_model"])
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")  # Gemini gave no id: one is made so the client can answer it
    call["id"] = "<generated>"
    assert stable(completion) == fx["openai_response"]
    ChatCompletion.model_validate(completion)


def test_tool_call_made_here_round_trips_back_to_gemini_with_name_and_thought_signature() -> None:
    fx = load_json("gemini", "chat_tools.json")
    message = from_generate_response(fx["wire_response"], model="m")["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    follow_up = {"messages": [{"role": "user", "content": "dim"}, message, {"role": "tool", "tool_call_id": call_id, "content": "ok"}]}
    contents = to_generate_request(follow_up)["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "EpwCAVSoXO7gkQ=="
    assert contents[2]["parts"] == [{"functionResponse": {"name": "set_light_values", "response": {"result": "ok"}}}]


def test_a_tool_result_for_an_unknown_call_is_a_400() -> None:
    with pytest.raises(GatewayError) as err:
        to_generate_request({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    assert err.value.status == 400 and "nope" in err.value.message


def test_remote_image_urls_are_refused_because_gemini_takes_inline_data() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]}
    with pytest.raises(GatewayError, match="data:"):
        to_generate_request(body)


def test_json_schema_keys_gemini_rejects_are_dropped_recursively() -> None:
    schema = {"$schema": "x", "type": "object", "additionalProperties": False, "properties": {
        "tags": {"type": "array", "items": {"type": "string", "const": "a", "additionalProperties": False}},
        "kind": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}
    assert to_gemini_schema(schema) == {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a"]}},
        "kind": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("OTHER", "stop")])
def test_finish_reasons_map_to_openai(reason: str, finish: str) -> None:
    resp = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert from_generate_response(resp, model="m")["choices"][0]["finish_reason"] == finish


def test_a_blocked_prompt_reads_as_an_empty_content_filtered_answer() -> None:
    resp = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}
    completion = from_generate_response(resp, model="m")
    ChatCompletion.model_validate(completion)
    assert completion["choices"][0]["finish_reason"] == "content_filter"


def test_n_asks_gemini_for_that_many_candidates_and_each_becomes_a_choice() -> None:
    assert to_generate_request({"messages": [{"role": "user", "content": "x"}], "n": 2})["generationConfig"] == {"candidateCount": 2}
    resp = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
                           {"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP", "index": 1}]}
    choices = from_generate_response(resp, model="m")["choices"]
    assert [(c["index"], c["message"]["content"]) for c in choices] == [(0, "a"), (1, "b")]


@pytest.mark.parametrize("case", load_json("gemini", "errors.json")["cases"], ids=lambda c: f'{c["status"]}-{c["body"]["error"]["status"]}')
def test_gemini_errors_map_to_gateway_codes(case: dict) -> None:
    exc = error_from_response(case["status"], orjson.dumps(case["body"]), case["headers"], "gem")
    assert (exc.code, exc.status, exc.retryable) == (case["code"], case["http"], case["retryable"])
    assert exc.context_window == case.get("context_window", False)
    assert exc.retry_after == case.get("retry_after")
    assert exc.message.startswith("gem: ")
