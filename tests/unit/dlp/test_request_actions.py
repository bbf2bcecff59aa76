"""What reaches the upstream, and what the client gets back, for each action on the request side."""
from __future__ import annotations

import pytest

from gateway.call import Project
from gateway.testing import ScriptedNext, drive, make_call

from .conftest import chat, make_dlp

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.org"


async def test_mask_sends_placeholders_upstream_and_restores_them_in_the_answer():
    dlp = make_dlp()
    call = make_call(chat(f"Email {EMAIL} about card {CARD}, then email {EMAIL} again"))
    nxt = ScriptedNext(text="Sent to [EMAIL_1]; card [CARD_1] noted.")
    result = await drive(await dlp(call, nxt), call)
    sent = nxt.bodies[0]["messages"][0]["content"]
    assert sent == "Email [EMAIL_1] about card [CARD_1], then email [EMAIL_1] again"
    assert EMAIL not in str(nxt.bodies[0]) and "4111" not in str(nxt.bodies[0])
    assert result.text == f"Sent to {EMAIL}; card {CARD} noted."
    assert call.facts.dlp_findings == {"email": 2, "credit_card": 1}


async def test_redact_replaces_values_with_the_label_and_nothing_is_restored():
    dlp = make_dlp(default_action="redact")
    call = make_call(chat(f"my ssn is 123-45-6780 and mail {EMAIL}"))
    nxt = ScriptedNext(text="ok [SSN]")
    result = await drive(await dlp(call, nxt), call)
    assert nxt.bodies[0]["messages"][0]["content"] == "my ssn is [SSN] and mail [EMAIL]"
    assert result.text == "ok [SSN]"


async def test_block_returns_dlp_violation_naming_detectors_and_counts_but_no_value():
    dlp = make_dlp(actions={"credit_card": "block"})
    call = make_call(chat(f"pay with {CARD} or 5500 0000 0000 0004, mail {EMAIL}"))
    nxt = ScriptedNext(text="never")
    with pytest.raises(Exception) as exc:
        await dlp(call, nxt)
    err = exc.value
    assert err.code == "dlp_violation" and err.status == 400
    assert err.details == {"detectors": {"credit_card": 2}}
    body = str(err.body())
    assert "4111" not in body and "5500" not in body and EMAIL not in body
    assert nxt.calls == []
    assert call.facts.dlp_findings == {"credit_card": 2, "email": 1}


async def test_log_counts_the_finding_and_forwards_the_text_unchanged():
    dlp = make_dlp(default_action="log")
    call = make_call(chat(f"server 10.1.2.3 belongs to {EMAIL}"))
    nxt = ScriptedNext(text="fine")
    await drive(await dlp(call, nxt), call)
    assert nxt.bodies[0]["messages"][0]["content"] == f"server 10.1.2.3 belongs to {EMAIL}"
    assert call.facts.dlp_findings == {"ipv4": 1, "email": 1}
    assert call.facts.extra["dlp_actions"] == {"ipv4": {"log": 1}, "email": {"log": 1}}


async def test_content_parts_tool_call_arguments_and_system_messages_are_all_scanned():
    dlp = make_dlp()
    body = {"model": "mock", "messages": [
        {"role": "system", "content": "Operator key: AKIAIOSFODNN7EXAMPL3"},
        {"role": "user", "content": [{"type": "text", "text": f"write to {EMAIL}"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'}}]},
    ]}
    call = make_call(body)
    nxt = ScriptedNext(text="ok")
    await drive(await dlp(call, nxt), call)
    sent = nxt.bodies[0]["messages"]
    assert sent[0]["content"] == "Operator key: [AWS_KEY_ID_1]"
    assert sent[1]["content"][0]["text"] == "write to [EMAIL_1]"
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == '{"to": "[EMAIL_1]"}'


async def test_embeddings_input_list_and_legacy_prompt_are_masked():
    dlp = make_dlp()
    call = make_call({"model": "mock", "input": [f"a {EMAIL}", "plain"]}, endpoint="embeddings")
    nxt = ScriptedNext(json={"object": "list", "data": []})
    await dlp(call, nxt)
    assert nxt.bodies[0]["input"] == ["a [EMAIL_1]", "plain"]
    call = make_call({"model": "mock", "prompt": f"to {EMAIL}"}, endpoint="completions")
    nxt = ScriptedNext(json={"choices": [{"index": 0, "text": "re [EMAIL_1]", "finish_reason": "stop"}]})
    reply = await dlp(call, nxt)
    assert nxt.bodies[0]["prompt"] == "to [EMAIL_1]"
    assert reply.body["choices"][0]["text"] == f"re {EMAIL}"


async def test_a_literal_placeholder_in_the_prompt_is_never_reused_for_a_value():
    dlp = make_dlp()
    call = make_call(chat(f"the template says [EMAIL_1]; the real one is {EMAIL}"))
    nxt = ScriptedNext(text="[EMAIL_1] vs [EMAIL_2]")
    result = await drive(await dlp(call, nxt), call)
    assert nxt.bodies[0]["messages"][0]["content"] == "the template says [EMAIL_1]; the real one is [EMAIL_2]"
    assert result.text == f"[EMAIL_1] vs {EMAIL}"


async def test_routes_not_listed_pass_through_untouched():
    dlp = make_dlp(routes=["chat.completions"])
    call = make_call({"model": "mock", "input": EMAIL}, endpoint="embeddings")
    nxt = ScriptedNext(json={"object": "list", "data": []})
    await dlp(call, nxt)
    assert nxt.bodies[0]["input"] == EMAIL
    assert call.facts.dlp_findings == {}


async def test_project_override_from_the_store_changes_the_action_for_that_project_only():
    dlp = make_dlp()
    strict = Project(id="p-strict", settings={"dlp": {"actions": {"email": "block"}}})
    call = make_call(chat(f"hi {EMAIL}"), project=strict)
    with pytest.raises(Exception) as exc:
        await dlp(call, ScriptedNext(text="x"))
    assert exc.value.code == "dlp_violation"
    relaxed = Project(id="p-off", settings={"dlp": {"enabled": False}})
    call = make_call(chat(f"hi {EMAIL}"), project=relaxed)
    nxt = ScriptedNext(text="x")
    await dlp(call, nxt)
    assert nxt.bodies[0]["messages"][0]["content"] == f"hi {EMAIL}"
    call = make_call(chat(f"hi {EMAIL}"), project=Project(id="p-default"))
    nxt = ScriptedNext(text="x")
    await dlp(call, nxt)
    assert nxt.bodies[0]["messages"][0]["content"] == "hi [EMAIL_1]"


async def test_an_invalid_project_override_falls_back_to_the_gateway_policy():
    dlp = make_dlp(actions={"email": "block"})
    call = make_call(chat(f"hi {EMAIL}"), project=Project(id="p", settings={"dlp": {"actions": {"email": "allow"}}}))
    with pytest.raises(Exception) as exc:
        await dlp(call, ScriptedNext(text="x"))
    assert exc.value.code == "dlp_violation"


async def test_upstream_errors_pass_through_unchanged():
    dlp = make_dlp()
    call = make_call(chat(f"hi {EMAIL}"))
    from gateway.errors import GatewayError
    nxt = ScriptedNext(error=GatewayError("provider_error", "upstream down"))
    with pytest.raises(GatewayError):
        await dlp(call, nxt)
