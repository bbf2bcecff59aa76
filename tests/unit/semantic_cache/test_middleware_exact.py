"""The middleware with the exact layer only (no model): hits, replay, storing rules, tenancy, admin."""
from __future__ import annotations

import time

from gateway import GatewayError, Project, build_chain
from gateway.chunks import completion_to_chunks
from gateway.pricing import Pricing
from gateway.testing import ScriptedNext, completion, drive, make_call, make_services
from plugins.middleware.semantic_cache import SemanticCache, SemanticCacheConfig

MSG = [{"role": "user", "content": "What is the capital of France?"}]


def cache(**kw) -> SemanticCache:
    pricing = Pricing({"mock-1": {"input": 1.0, "output": 2.0}})
    return SemanticCache(SemanticCacheConfig(semantic=False, **kw), make_services(pricing=pricing))


def req(project: str = "p1", messages=MSG, headers=None, **body):
    return make_call({"model": "mock", "messages": messages, **body}, headers=headers, project=Project(id=project))


async def ask(mw, call, nxt):
    return await drive(await mw(call, nxt), call)


async def test_second_identical_request_is_served_from_cache_with_savings_counted():
    mw, nxt = cache(), ScriptedNext(json=completion("Paris.", prompt_tokens=20, completion_tokens=10))
    first = await ask(mw, req(), nxt)
    call = req()
    second = await ask(mw, call, nxt)
    assert len(nxt.calls) == 1
    assert second.text == "Paris." and second.body["id"] != first.body["id"]
    assert call.facts.cached == "exact" and call.facts.provider == "cache"
    assert call.reply_headers["x-watchllm-cached"] == "true"
    assert call.reply_headers["x-watchllm-tokens-saved"] == "30"
    assert call.facts.tokens_saved == 30 and call.facts.cost_saved_micros == 20 * 1 + 10 * 2


async def test_a_json_answer_is_replayed_as_a_real_stream_with_usage():
    mw, nxt = cache(), ScriptedNext(json=completion("The capital of France is Paris, a city on the Seine."))
    await ask(mw, req(), nxt)
    call = req(stream=True, stream_options={"include_usage": True})
    out = await ask(mw, call, nxt)
    assert len(nxt.calls) == 1 and out.reply.is_stream
    content = [c for c in out.chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 4
    assert out.text == "The capital of France is Paris, a city on the Seine."
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in out.chunks)
    assert out.chunks[-1]["usage"]["total_tokens"] == 8
    assert len({c["id"] for c in out.chunks}) == 1


async def test_a_finished_stream_is_stored_and_served_to_a_json_request():
    mw = cache()
    nxt = ScriptedNext(stream=completion_to_chunks(completion("streamed answer")))
    await ask(mw, req(stream=True), nxt)
    out = await ask(mw, req(), nxt)
    assert len(nxt.calls) == 1 and out.text == "streamed answer"


async def test_a_stream_the_client_left_early_is_not_stored():
    mw = cache()
    nxt = ScriptedNext(stream=completion_to_chunks(completion("a long answer " * 20)))
    reply = await mw(req(stream=True), nxt)
    await drive(reply, req(stream=True), disconnect_after=2)
    await ask(mw, req(), nxt)
    assert len(nxt.calls) == 2


async def test_errors_and_truncated_answers_are_not_stored():
    mw = cache()
    failing = build_chain([mw], ScriptedNext(error=GatewayError("provider_error", "boom")))
    err = await drive(await failing(req()), req())
    assert err.reply.status == 502
    truncated = completion("cut")
    truncated["choices"][0]["finish_reason"] = "length"
    await ask(mw, req(), ScriptedNext(json=truncated))
    nxt = ScriptedNext(text="fine")
    await ask(mw, req(), nxt)
    assert len(nxt.calls) == 1  # neither the error nor the truncated answer was served
    assert mw.stats("p1")["stored"] == 1


async def test_the_same_prompt_from_another_project_never_hits():
    mw, nxt = cache(), ScriptedNext(text="p1's answer")
    await ask(mw, req("p1"), nxt)
    call = req("p2")
    await ask(mw, call, nxt)
    assert len(nxt.calls) == 2 and call.facts.cached is None


async def test_bypass_header_and_project_switch_skip_the_cache():
    mw, nxt = cache(), ScriptedNext(text="a")
    await ask(mw, req(), nxt)
    await ask(mw, req(headers={"x-watchllm-cache": "bypass"}), nxt)
    await ask(mw, req(headers={"Cache-Control": "no-cache"}), nxt)
    off = make_call({"model": "mock", "messages": MSG}, project=Project(id="p1", settings={"semantic_cache": {"enabled": False}}))
    await ask(mw, off, nxt)
    assert len(nxt.calls) == 4


async def test_flush_empties_one_project_and_stats_count_hits_and_misses():
    mw, nxt = cache(), ScriptedNext(text="a")
    await ask(mw, req("p1"), nxt)
    await ask(mw, req("p1"), nxt)
    await ask(mw, req("p2"), nxt)
    s = mw.stats("p1")
    assert s["entries"] == 1 and s["hits"] == {"exact": 1, "semantic": 0} and s["misses"] == 1
    assert await mw.flush("p1") == 1
    assert mw.stats("p1")["entries"] == 0 and mw.stats("p2")["entries"] == 1
    await ask(mw, req("p1"), nxt)
    assert len(nxt.calls) == 3


async def test_entries_expire_after_their_ttl():
    mw, nxt = cache(ttl_seconds=0.05), ScriptedNext(text="a")
    await ask(mw, req(), nxt)
    time.sleep(0.06)
    await ask(mw, req(), nxt)
    assert len(nxt.calls) == 2


async def test_exact_lookup_takes_microseconds():
    mw, nxt = cache(), ScriptedNext(text="a")
    await ask(mw, req(), nxt)
    n, t0 = 2000, time.perf_counter()
    for _ in range(n):
        await mw(req(), nxt)
    per = (time.perf_counter() - t0) / n
    assert len(nxt.calls) == 1
    assert per < 0.0005, f"{per * 1e6:.0f} µs per exact hit"


async def test_project_setting_as_a_plain_bool_turns_the_cache_off_and_on():
    mw, nxt = cache(), ScriptedNext(text="a")

    def call(flag):
        return make_call({"model": "mock", "messages": MSG}, project=Project(id="p1", settings={"semantic_cache": flag}))

    await ask(mw, call(False), nxt)
    await ask(mw, call(False), nxt)
    assert len(nxt.calls) == 2 and mw.stats("p1")["entries"] == 0
    await ask(mw, call(True), nxt)
    hit = call(True)
    await ask(mw, hit, nxt)
    assert len(nxt.calls) == 3 and hit.facts.cached == "exact"
