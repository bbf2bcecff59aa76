"""Server-side tools through a real gateway process and the OpenAI SDK (mock provider scripted)."""
from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from tests.fixtures.gateway import base_config


@pytest.fixture
def gw(gateway_factory, tmp_path):
    cfg = base_config(
        tmp_path,
        pipeline=["tool_loop", "router"],
        tools={"calculator": {}, "current_time": {"default_timezone": "Europe/Paris"}, "http_get": {"allow_hosts": ["example.com"]}},
        models={"mock": {"targets": ["mock/mock-1"]},
                "agent": {"targets": ["mock/mock-1"], "tools": ["calculator", "current_time"], "max_tool_rounds": 2}},
    )
    return gateway_factory(cfg)


def client(gw):
    return openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)


def test_calculator_round_trip_through_the_sdk(gw):
    raw = client(gw).chat.completions.with_raw_response.create(
        model="agent", messages=[{"role": "user", "content": 'What is 12*12? [[call calculator {"expression": "12*12"}]]'}])
    resp = raw.parse()
    assert resp.choices[0].message.content == 'Result: {"expression":"12*12","result":144}'
    assert resp.choices[0].finish_reason == "stop"
    assert raw.headers["x-watchllm-tool-rounds"] == "1"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 30


def test_parallel_calls_through_the_sdk_streamed(gw):
    stream = client(gw).chat.completions.create(
        model="agent", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": '[[call calculator {"expression": "1+1"}]] [[call current_time {"timezone": "UTC"}]]'}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith('Result: {"expression":"1+1","result":2}; {"timezone":"UTC"')
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 20


def test_failing_tool_is_reported_to_the_model_not_as_an_http_error(gw):
    resp = client(gw).chat.completions.create(
        model="agent", messages=[{"role": "user", "content": '[[call calculator {"expression": "2**99999"}]] [[call calculator {"bad": 1}]]'}])
    text = resp.choices[0].message.content
    assert text.count('{"error":') == 2 and "exponent too large" in text and "invalid arguments" in text


def test_round_limit_through_the_sdk(gw):
    resp = client(gw).chat.completions.with_raw_response.create(
        model="agent", messages=[{"role": "user", "content": '[[loop]] [[call calculator {"expression": "1"}]]'}])
    assert resp.headers["x-watchllm-tool-rounds"] == "2"
    assert resp.parse().choices[0].message.content.startswith("Result:")


def test_client_tools_come_back_to_the_client(gw):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    resp = client(gw).chat.completions.create(
        model="agent", tools=tools, messages=[{"role": "user", "content": '[[call get_weather {"city": "Oslo"}]]'}])
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}


def test_v1_tools_lists_the_tools_models_may_use(gw):
    with urllib.request.urlopen(f"{gw.base_url}/tools", timeout=5) as r:
        data = json.loads(r.read())["data"]
    by_name = {t["function"]["name"]: t for t in data}
    assert set(by_name) == {"calculator", "current_time"}  # http_get is enabled but offered to no alias
    assert by_name["calculator"]["models"] == ["agent"]
    assert by_name["calculator"]["function"]["parameters"]["required"] == ["expression"]


def test_streamed_final_round_reaches_the_client_live(gw):
    """The final answer streams as the model writes it (chunks 150 ms apart), not re-chunked at the end."""
    arrivals, kinds = [], []
    stream = client(gw).chat.completions.create(
        model="agent", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": '[[call calculator {"expression": "6*7"}]]'}],
        extra_headers={"x-mock-chunk-delay-ms": "150", "x-mock-chunks": "6"})
    import time

    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            kinds.append("tool_calls")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'Result: {"expression":"6*7","result":42}'
    assert kinds == []  # the gateway's own tool calls never reach the client
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({c.id for c in chunks}) == 1  # one coherent stream across rounds
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 20  # summed over both rounds
    assert len(arrivals) >= 5 and arrivals[-1] - arrivals[0] > 0.5  # pieces arrived as written, not all at once
