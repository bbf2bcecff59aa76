"""Streams: placeholders split across chunks are restored; with scan_response, values split across
chunks are redacted; held-back text is flushed on the finish_reason chunk; nothing is buffered whole."""
from __future__ import annotations

import random

from gateway.testing import ScriptedNext, drive, make_call

from .conftest import chat, chunk, make_dlp

EMAIL = "jane.roe@example.org"


def split_into(text: str, sizes: list[int]) -> list[str]:
    out, i = [], 0
    for n in sizes:
        out.append(text[i:i + n])
        i += n
    if i < len(text):
        out.append(text[i:])
    return [p for p in out if p]


async def run(dlp, prompt: str, pieces: list[str], **body):
    call = make_call(chat(prompt, stream=True, **body))
    stream = [chunk("", role="assistant")] + [chunk(p) for p in pieces] + [chunk(finish="stop")]
    nxt = ScriptedNext(stream=stream)
    return await drive(await dlp(call, nxt), call), nxt, call


async def test_a_placeholder_split_over_every_boundary_is_restored():
    answer = "Hello [EMAIL_1], your card [CARD_1] is fine. [NOT_A_TOKEN] stays."
    for cut in range(1, len(answer)):
        dlp = make_dlp()
        result, nxt, _ = await run(dlp, f"I am {EMAIL}, card 4111111111111111", [answer[:cut], answer[cut:]])
        assert result.text == f"Hello {EMAIL}, your card 4111111111111111 is fine. [NOT_A_TOKEN] stays.", cut
    assert "[EMAIL_1]" in nxt.bodies[0]["messages"][0]["content"]


async def test_random_chunking_of_a_long_answer_round_trips():
    rnd = random.Random(3)
    answer = " ".join(f"item {i} for [EMAIL_1] [" for i in range(200))
    expected = answer.replace("[EMAIL_1]", EMAIL)
    for _ in range(20):
        sizes = [rnd.randint(1, 9) for _ in range(len(answer))]
        result, _, _ = await run(make_dlp(), f"to {EMAIL}", split_into(answer, sizes))
        assert result.text == expected


async def test_text_reaches_the_client_while_the_stream_is_running():
    result, _, _ = await run(make_dlp(), f"to {EMAIL}", ["a" * 10, " then [EMA", "IL_1] done", " end"])
    texts = [c["choices"][0]["delta"].get("content") for c in result.chunks]
    assert texts[1:3] == ["aaaaaaaaaa", " then "]  # emitted before the placeholder finished arriving
    assert result.chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_scan_response_redacts_a_card_split_across_chunks():
    dlp = make_dlp(scan_response=True)
    answer = "Sure, the number on file is 4111 1111 1111 1111 and that is all. " * 3
    for sizes in ([5] * 60, [1] * 400, [37, 3, 90, 11, 200]):
        result, _, call = await run(dlp, "what card do I have?", split_into(answer, sizes))
        assert "4111" not in result.text and result.text.count("[CARD]") == 3
        assert result.text.startswith("Sure, the number on file is [CARD] and")
        assert call.facts.dlp_findings["credit_card"] == 3
        assert call.facts.extra["dlp_actions"]["credit_card"] == {"redact": 3}


async def test_scan_response_redacts_a_pem_key_much_longer_than_the_holdback():
    body = "\n".join(["MIIEowIBAAKCAQEA" + "x" * 48] * 40)
    key = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    answer = f"Here you go:\n{key}\nKeep it safe."
    result, _, _ = await run(make_dlp(scan_response=True), "give me a key", split_into(answer, [7] * 1000))
    assert result.text == "Here you go:\n[PRIVATE_KEY]\nKeep it safe."


async def test_scan_response_restores_masked_prompt_values_but_redacts_new_ones():
    dlp = make_dlp(scan_response=True)
    answer = "I wrote to [EMAIL_1] and cc'd boss@example.com."
    result, _, _ = await run(dlp, f"mail {EMAIL}", split_into(answer, [4] * 30))
    assert result.text == f"I wrote to {EMAIL} and cc'd [EMAIL]."


async def test_streamed_tool_call_arguments_are_restored():
    dlp = make_dlp()
    call = make_call(chat(f"send to {EMAIL}", stream=True))
    tc = lambda args, **kw: chunk(tool_calls=[{"index": 0, "function": {"arguments": args}, **kw}])
    stream = [tc('{"to": "[EM', id="t1", type="function"), tc('AIL_'), tc('1]"}'), chunk(finish="tool_calls")]
    result = await drive(await dlp(call, ScriptedNext(stream=stream)), call)
    args = "".join(tcall["function"].get("arguments", "") for c in result.chunks
                   for tcall in c["choices"][0]["delta"].get("tool_calls") or ())
    assert args == f'{{"to": "{EMAIL}"}}'


async def test_no_findings_means_no_transform_is_registered():
    call = make_call(chat("nothing sensitive here", stream=True))
    reply = await make_dlp()(call, ScriptedNext(stream=[chunk("hi"), chunk(finish="stop")]))
    assert reply.transforms == []
