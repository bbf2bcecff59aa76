"""The exact layer's key: what must and must not make two requests share an answer."""
from __future__ import annotations

import pytest

from gateway import GatewayError
from plugins.middleware.semantic_cache.exact import build_request
from plugins.middleware.semantic_cache.policy import skip_reason, threshold_override


def body(*msgs: tuple[str, str], **params):
    return {"model": "m", "messages": [{"role": r, "content": c} for r, c in msgs], **params}


def key(project="p1", **kw):
    return build_request(project, "chat.completions", body(("system", "be brief"), ("user", "What is DNS?"), **kw))


def test_whitespace_and_stream_flags_do_not_change_the_key():
    a = build_request("p1", "chat.completions", body(("user", "What  is\nDNS? ")))
    b = build_request("p1", "chat.completions", body(("user", "What is DNS?"), stream=True, stream_options={"include_usage": True}, user="u1"))
    assert a.exact_key == b.exact_key and a.scope == b.scope


def test_case_is_kept_because_it_can_change_the_answer():
    a = build_request("p1", "chat.completions", body(("user", "what does `ls -L` do?")))
    b = build_request("p1", "chat.completions", body(("user", "what does `ls -l` do?")))
    assert a.exact_key != b.exact_key


@pytest.mark.parametrize("param", [{"temperature": 0.2}, {"max_tokens": 5}, {"response_format": {"type": "json_object"}},
                                   {"tools": [{"type": "function", "function": {"name": "f"}}]}, {"seed": 7}])
def test_answer_changing_parameters_change_the_scope(param):
    assert key(**param).scope != key().scope


def test_project_model_and_system_prompt_are_part_of_the_scope():
    base = key()
    assert key(project="p2").scope != base.scope
    other_model = build_request("p1", "chat.completions", {**body(("system", "be brief"), ("user", "What is DNS?")), "model": "m2"})
    other_system = build_request("p1", "chat.completions", body(("system", "be verbose"), ("user", "What is DNS?")))
    assert other_model.scope != base.scope and other_system.scope != base.scope


def test_question_is_the_last_user_message_and_context_the_earlier_turns():
    req = build_request("p", "chat.completions", body(("system", "s"), ("user", "I use React."), ("assistant", "Nice."), ("user", "How do I manage state?")))
    assert req.question == "How do I manage state?"
    assert req.context == (("user", "I use React."), ("assistant", "Nice."))
    assert req.semantic_ok


def test_images_keep_the_exact_layer_but_disable_the_semantic_one():
    msg = {"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "http://x/1.png"}}]}
    other = {"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "http://x/2.png"}}]}
    a = build_request("p", "chat.completions", {"model": "m", "messages": [msg]})
    b = build_request("p", "chat.completions", {"model": "m", "messages": [other]})
    assert not a.semantic_ok and a.exact_key != b.exact_key


def test_a_conversation_ending_with_the_assistant_is_not_cacheable():
    assert build_request("p", "chat.completions", body(("user", "hi"), ("assistant", "hello"))) is None


@pytest.mark.parametrize("headers,params,reason", [
    ({"Cache-Control": "no-cache"}, {}, "no-cache"),
    ({"x-watchllm-cache": "bypass"}, {}, "bypass"),
    ({}, {"n": 2}, "n"),
    ({}, {"temperature": 1.5}, "temperature"),
])
def test_requests_that_skip_the_cache(headers, params, reason):
    assert skip_reason(headers, body(("user", "hi"), **params), max_temperature=1.0) == reason


def test_tool_calls_in_flight_skip_the_cache():
    b = {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"}]}
    assert skip_reason({}, b, 1.0) == "tool_calls"


def test_default_temperature_and_low_temperature_are_cached():
    assert skip_reason({}, body(("user", "hi")), 1.0) is None
    assert skip_reason({}, body(("user", "hi"), temperature=0), 1.0) is None


def test_threshold_header_is_parsed_and_a_bad_one_is_a_400():
    assert threshold_override({"x-watchllm-cache-threshold": "0.95"}) == 0.95
    assert threshold_override({}) is None
    with pytest.raises(GatewayError) as err:
        threshold_override({"x-watchllm-cache-threshold": "high"})
    assert err.value.status == 400


def test_keys_are_stable_across_releases():
    """Entries in Redis outlive a deploy: the same request must keep the same keys (pinned digests)."""
    req = build_request("p1", "chat.completions", {
        "model": "m", "messages": [{"role": "system", "content": "be  brief"}, {"role": "user", "content": "What is\u00a0DNS?"}],
        "temperature": 0, "max_tokens": 5, "stream": True})
    assert (req.scope, req.exact_key) == ("00bf134932caea7ea013778215b332a3", "9f4a462f98155fd1f43b8dd716d01e8f")
    assert req.question == "What is DNS?"


@pytest.mark.parametrize("variant", ["caf\u00e9\u2003ok", "cafe\u0301 ok", " caf\u00e9\n\tok "])
def test_unicode_whitespace_and_composition_do_not_change_the_key(variant):
    a = build_request("p1", "chat.completions", body(("user", "caf\u00e9 ok")))
    b = build_request("p1", "chat.completions", body(("user", variant)))
    assert a.exact_key == b.exact_key and b.question == "caf\u00e9 ok"


def test_a_message_with_more_than_text_keys_differently():
    plain = build_request("p1", "chat.completions", body(("user", "hi")))
    named = build_request("p1", "chat.completions", {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "bob"}]})
    assert plain.exact_key != named.exact_key and plain.scope == named.scope


def test_skip_headers_are_matched_in_any_case_on_real_request_headers():
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(CIMultiDict({"CACHE-CONTROL": "No-Cache"}))
    assert skip_reason(headers, body(("user", "hi")), 1.0) == "no-cache"
    assert skip_reason({"X-WatchLLM-Cache": "bypass"}, body(("user", "hi")), 1.0) == "bypass"
    assert skip_reason(CIMultiDictProxy(CIMultiDict()), body(("user", "hi")), 1.0) is None
