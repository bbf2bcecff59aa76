"""Ollama /api/chat ⇄ OpenAI chat, JSON bodies, checked against recorded fixtures both ways."""
from __future__ import annotations

import orjson
import pytest
from openai.types.chat import ChatCompletion

from gateway.errors import GatewayError
from plugins.providers.ollama.provider import error_from_response
from plugins.providers.ollama.translate import from_chat_response, to_chat_request
from tests.fixtures.providers import load_json, stable


@pytest.mark.parametrize("name", ["chat_text.json", "chat_tools.json"])
def test_openai_request_becomes_the_recorded_ollama_request(name: str) -> None:
    fx = load_json("ollama", name)
    wire = to_chat_request(fx["openai_request"], model=fx["target_model"], stream=False, defaults=fx["config_options"])
    assert wire == fx["wire_request"]


def test_recorded_text_reply_becomes_a_valid_openai_completion() -> None:
    fx = load_json("ollama", "chat_text.json")
    completion = from_chat_response(fx["wire_response"], model=fx["target_model"])
    assert completion["id"].startswith("chatcmpl-")
    assert {k: v for k, v in stable(completion).items() if k != "id"} == fx["openai_response"]
    ChatCompletion.model_validate(completion)


def test_recorded_tool_call_reply_gets_an_id_and_string_arguments() -> None:
    fx = load_json("ollama", "chat_tools.json")
    completion = from_chat_response(fx["wire_response"], model=fx["target_model"])
    call = completion["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")  # Ollama gives no ids; the client needs one to answer
    call["id"] = "<generated>"
    assert {k: v for k, v in stable(completion).items() if k != "id"} == fx["openai_response"]
    ChatCompletion.model_validate(completion)


def test_client_options_override_configured_defaults() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0.9}
    wire = to_chat_request(body, model="m", stream=True, defaults={"temperature": 0.1, "num_ctx": 4096}, keep_alive="10m")
    assert wire["options"] == {"temperature": 0.9, "num_ctx": 4096}
    assert wire["stream"] is True and wire["keep_alive"] == "10m"


def test_json_schema_response_format_becomes_ollamas_structured_output() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    body = {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}
    assert to_chat_request(body, model="m", stream=False)["format"] == schema


def test_tool_choice_none_offers_no_tools_since_ollama_has_no_tool_choice() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}
    assert "tools" not in to_chat_request(body, model="m", stream=False)


def test_length_stop_maps_to_length() -> None:
    resp = {"message": {"content": "Once"}, "done": True, "done_reason": "length", "prompt_eval_count": 1, "eval_count": 1}
    assert from_chat_response(resp, model="m")["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "param"),
    [({"messages": []}, "messages"), ({"messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
     ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]}, "messages")],
)
def test_requests_ollama_cannot_serve_are_400_naming_the_parameter(body, param) -> None:
    with pytest.raises(GatewayError) as err:
        to_chat_request(body, model="m", stream=False)
    assert err.value.status == 400 and err.value.param == param


@pytest.mark.parametrize("case", load_json("ollama", "errors.json")["cases"], ids=lambda c: str(c["status"]))
def test_ollama_errors_map_to_gateway_codes(case: dict) -> None:
    exc = error_from_response(case["status"], orjson.dumps(case["body"]), case["headers"], "local")
    assert (exc.code, exc.status, exc.retryable) == (case["code"], case["http"], case["retryable"])
    assert exc.retry_after == case.get("retry_after")
    assert exc.message == f"local: {case['body']['error']}"
