"""The chain contract: order, short-circuit, error boundary, stream hooks exactly once."""
from __future__ import annotations

from gateway import GatewayError, Reply, build_chain
from gateway.testing import ScriptedNext, drive, make_call, make_services
from plugins.middleware.examples.add_header import AddHeader, AddHeaderConfig
from plugins.middleware.examples.block_words import BlockWords, BlockWordsConfig


class Recorder:
    def __init__(self, name, log):
        self.name, self.log = name, log

    async def __call__(self, call, call_next):
        self.log.append(f"{self.name}>")
        reply = await call_next(call)
        self.log.append(f"<{self.name}")
        return reply


async def test_layers_run_in_declared_order_around_the_terminal():
    log: list[str] = []
    nxt = ScriptedNext(text="ok")
    chain = build_chain([Recorder("a", log), Recorder("b", log)], nxt)
    reply = await chain(make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
    assert reply.status == 200 and log == ["a>", "b>", "<b", "<a"]


async def test_gateway_error_in_inner_layer_reaches_outer_layer_as_a_reply():
    seen = []

    class Outer:
        async def __call__(self, call, call_next):
            reply = await call_next(call)
            seen.append((reply.status, reply.body["error"]["code"]))
            return reply

    class Failing:
        async def __call__(self, call, call_next):
            raise GatewayError("rate_limit_exceeded", "slow down", headers={"Retry-After": "3"})

    chain = build_chain([Outer(), Failing()], ScriptedNext(text="never"))
    reply = await chain(make_call({"model": "m", "messages": []}))
    assert seen == [(429, "rate_limit_exceeded")]
    assert reply.headers["Retry-After"] == "3"


async def test_block_words_short_circuits_before_the_upstream():
    nxt = ScriptedNext(text="never")
    mw = BlockWords(BlockWordsConfig(words=["secret"]), make_services())
    chain = build_chain([mw], nxt)
    reply = await chain(make_call({"model": "m", "messages": [{"role": "user", "content": "the SECRET plan"}]}))
    assert reply.status == 400 and reply.body["error"]["code"] == "dlp_violation"
    assert nxt.calls == []
    ok = await chain(make_call({"model": "m", "messages": [{"role": "user", "content": "secretary"}]}))
    assert ok.status == 200 and ok.headers["x-policy"] == "block-words"


async def test_add_header_stamps_short_circuit_replies_too():
    mw = AddHeader(AddHeaderConfig(name="x-team", value="blue"), make_services())
    call = make_call({"model": "m", "messages": []})
    await build_chain([mw], ScriptedNext(error=GatewayError("invalid_model", "no")))(call)
    assert call.reply_headers["x-team"] == "blue"


async def test_stream_hooks_see_every_chunk_and_complete_exactly_once():
    events: list = []

    class Observer:
        async def __call__(self, call, call_next):
            reply = await call_next(call)
            reply.collect()
            reply.observe(lambda ch: events.append("chunk"))

            async def done(outcome):
                events.append(("done", outcome.ended, outcome.body["choices"][0]["message"]["content"]))

            reply.on_complete(done)
            return reply

    call = make_call({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    reply = await build_chain([Observer()], ScriptedNext(text="hello world"))(call)
    driven = await drive(reply, call)
    assert driven.text == "hello world"
    assert events.count("chunk") == len(driven.chunks) + 1  # + the usage chunk the client did not ask for
    assert events[-1] == ("done", "complete", "hello world")
    assert all(not c.get("usage") for c in driven.chunks)


async def test_client_disconnect_runs_the_completion_hook_with_client_gone():
    outcomes = []

    class Hook:
        async def __call__(self, call, call_next):
            reply = await call_next(call)

            async def done(o):
                outcomes.append(o.ended)

            reply.on_complete(done)
            return reply

    call = make_call({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    reply = await build_chain([Hook()], ScriptedNext(text="a long answer in many pieces"))(call)
    await drive(reply, call, disconnect_after=2)
    assert outcomes == ["client_gone"]


async def test_transform_can_hold_back_a_chunk():
    class DropEmpty:
        async def __call__(self, call, call_next):
            reply = await call_next(call)
            reply.transform(lambda ch: None if ch["choices"] and ch["choices"][0]["delta"].get("content") == "" else ch)
            return reply

    call = make_call({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    driven = await drive(await build_chain([DropEmpty()], ScriptedNext(text="abc"))(call), call)
    assert all(c["choices"][0]["delta"].get("content") != "" for c in driven.chunks)
    assert Reply  # imported for the contract
