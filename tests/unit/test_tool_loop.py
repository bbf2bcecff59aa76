"""The tool loop, with the mock provider scripted to call tools (``[[call NAME {args}]]``)."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.pipeline import build_chain
from gateway.testing import ScriptedNext, drive, make_call, make_services
from plugins.middleware.router import Router
from plugins.middleware.tool_loop import ToolLoop
from plugins.providers.mock import MockProvider


class Slow:
    name, description, timeout = "slow", "sleeps", 0.05
    parameters = {"type": "object", "properties": {}}

    def __init__(self, config, services):
        pass

    async def __call__(self, arguments, call):
        await asyncio.sleep(1)
        return "never"


class Boom:
    name, description, timeout = "boom", "raises", 1.0
    parameters = {"type": "object", "properties": {}}

    def __init__(self, config, services):
        pass

    async def __call__(self, arguments, call):
        raise RuntimeError("kaboom")


class Sleeper:
    """Records concurrency: parallel calls overlap."""
    name, description, timeout = "sleeper", "sleeps briefly", 2.0
    parameters = {"type": "object", "properties": {"ms": {"type": "integer"}}, "required": ["ms"]}
    active = peak = 0

    def __init__(self, config, services):
        pass

    async def __call__(self, arguments, call):
        Sleeper.active += 1
        Sleeper.peak = max(Sleeper.peak, Sleeper.active)
        await asyncio.sleep(arguments["ms"] / 1000)
        Sleeper.active -= 1
        return {"slept": arguments["ms"], "project": call.project_id}


def chain(max_rounds: int = 3):
    config = {
        "providers": {"mock": {"type": "mock"}},
        "models": {"m": {"targets": ["mock/mock-1"], "tools": ["calculator", "current_time"], "max_tool_rounds": max_rounds},
                   "plain": {"targets": ["mock/mock-1"]}},
        "tools": {"calculator": {}, "current_time": {}},
    }
    services = make_services(config)
    services.providers["mock"] = MockProvider(MockProvider.Config(), services)
    from plugins.tools.calculator import Calculator
    from plugins.tools.current_time import CurrentTime

    services.tools.update(calculator=Calculator(Calculator.Config(), services), current_time=CurrentTime(CurrentTime.Config(), services))
    for extra in (Slow, Boom, Sleeper):
        services.tools[extra.name] = extra(None, services)
    loop = ToolLoop(ToolLoop.Config(), services)
    return build_chain([loop, Router(Router.Config(), services)]), services


def ask(text: str, **body):
    return make_call({"model": "m", "messages": [{"role": "user", "content": text}], **body})


async def test_calculator_round_trip_returns_the_final_answer_with_summed_usage():
    handler, services = chain()
    call = ask('what is 6*7? [[call calculator {"expression": "6*7"}]]')
    out = await drive(await handler(call), call)
    assert out.outcome.ok
    assert out.text == 'Result: {"expression":"6*7","result":42}'
    assert call.facts.tool_rounds == 1 and services.providers["mock"].calls == 2
    usage = out.body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 20  # both rounds' prompts are counted
    assert call.facts.extra["tool_calls"] == [{"round": 1, "name": "calculator", "ok": True, "ms": pytest.approx(0, abs=50)}]
    assert out.reply.headers["x-watchllm-tool-rounds"] == "1"


async def test_gateway_tools_are_offered_next_to_the_clients_tools():
    nxt = ScriptedNext(text="hi")
    _, services = chain()
    client_tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    call = ask("hello", tools=[client_tool])
    await drive(await ToolLoop(ToolLoop.Config(), services)(call, nxt), call)
    names = [t["function"]["name"] for t in nxt.bodies[0]["tools"]]
    assert names == ["lookup", "calculator", "current_time"]
    assert "stream" not in nxt.bodies[0]  # rounds are requested non-streamed
    assert call.body["tools"] == [client_tool]  # the client's body is left as it was


async def test_calls_to_client_tools_go_back_to_the_client():
    handler, _ = chain()
    client_tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    call = ask('[[call lookup {"q": "x"}]]', tools=[client_tool])
    out = await drive(await handler(call), call)
    choice = out.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [tc["function"]["name"] for tc in choice["message"]["tool_calls"]] == ["lookup"]
    assert call.facts.tool_rounds == 0


async def test_mixed_round_returns_only_the_client_calls():
    handler, _ = chain()
    client_tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    call = ask('[[call lookup {}]] [[call calculator {"expression": "1+1"}]]', tools=[client_tool])
    out = await drive(await handler(call), call)
    assert [tc["function"]["name"] for tc in out.body["choices"][0]["message"]["tool_calls"]] == ["lookup"]


async def test_parallel_calls_run_concurrently_and_all_results_come_back():
    handler, services = chain()
    services.config.models["m"].tools.append("sleeper")
    Sleeper.active = Sleeper.peak = 0
    call = ask(" ".join('[[call sleeper {"ms": 100}]]' for _ in range(4)))
    started = asyncio.get_running_loop().time()
    out = await drive(await handler(call), call)
    elapsed = asyncio.get_running_loop().time() - started
    assert Sleeper.peak == 4 and elapsed < 0.35
    assert out.text.count('"slept":100') == 4 and '"project":"anonymous"' in out.text


@pytest.mark.parametrize("script,error", [
    ('[[call boom {}]]', "RuntimeError: kaboom"),
    ('[[call slow {}]]', "tool slow timed out"),
    ('[[call calculator {"expr": "1"}]]', "invalid arguments"),
    ('[[call calculator {"expression": "1/0"}]]', "division by zero"),
    ('[[call calculator {not json}]]', "not valid JSON"),
])
async def test_a_failing_tool_becomes_an_error_message_for_the_model(script, error):
    handler, services = chain()
    services.config.models["m"].tools.extend(["boom", "slow"])
    call = ask(script)
    out = await drive(await handler(call), call)
    assert out.outcome.status == 200
    assert out.text.startswith('Result: {"error":') and error in out.text
    assert call.facts.extra["tool_calls"][0]["ok"] is False


async def test_round_limit_stops_the_loop_and_forces_a_text_answer():
    handler, services = chain(max_rounds=2)
    call = ask('[[loop]] [[call calculator {"expression": "2+2"}]]')
    out = await drive(await handler(call), call)
    assert call.facts.tool_rounds == 2
    assert services.providers["mock"].calls == 3  # two tool rounds, then one forced text round
    assert out.body["choices"][0]["finish_reason"] == "stop"
    assert out.text.startswith("Result:")


async def test_streaming_client_gets_a_stream_of_the_final_answer():
    handler, _ = chain()
    call = ask('[[call calculator {"expression": "3*3"}]]', stream=True, stream_options={"include_usage": True})
    out = await drive(await handler(call), call)
    assert out.reply.is_stream
    assert out.text == 'Result: {"expression":"3*3","result":9}'
    assert out.outcome.usage.prompt_tokens > 20


async def test_aliases_without_tools_and_tool_choice_none_pass_through():
    handler, services = chain()
    call = make_call({"model": "plain", "messages": [{"role": "user", "content": "[[call calculator {}]]"}]})
    out = await drive(await handler(call), call)
    assert out.text.startswith("Mock answer to:")
    call = ask('[[call calculator {"expression": "1"}]]', tool_choice="none")
    out = await drive(await handler(call), call)
    assert out.text.startswith("Mock answer to:") and call.facts.tool_rounds == 0


async def test_upstream_error_in_a_round_is_returned_as_is():
    handler, _ = chain()
    call = make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]}, headers={"x-mock-status": "400"})
    out = await drive(await handler(call), call)
    assert out.outcome.status == 400


async def test_mock_scripts_tool_calls_in_stream_mode_too():
    services = make_services()
    mock = MockProvider(MockProvider.Config(), services)
    from gateway.call import Target
    from gateway.chunks import ChunkAccumulator

    body = {"model": "mock-1", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": '[[call f {"a": {"b": 1}}]] [[call g]]'}]}
    acc = ChunkAccumulator()
    async for chunk in mock.chat_stream(body, Target("mock", "mock-1"), make_call(body)):
        acc.add(chunk)
    streamed = acc.completion()["choices"][0]
    plain = (await mock.chat(body, Target("mock", "mock-1"), make_call(body)))["choices"][0]
    for choice in (streamed, plain):
        assert choice["finish_reason"] == "tool_calls"
        assert [(tc["function"]["name"], orjson.loads(tc["function"]["arguments"])) for tc in choice["message"]["tool_calls"]] == [
            ("f", {"a": {"b": 1}}), ("g", {})]
