from gateway.testing import ScriptedNext, drive, make_call, make_services

from watchllm_redact_answer import RedactAnswer


def layer():
    return RedactAnswer(RedactAnswer.Config(words=["secret"], mask="[x]"), make_services())


async def test_masks_words_in_a_json_answer():
    call = make_call({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    out = await drive(await layer()(call, ScriptedNext(text="the Secret plan, secretive")), call)
    assert out.text == "the [x] plan, secretive" and out.reply.headers["x-redacted"] == "1"


async def test_masks_words_split_across_stream_chunks():
    call = make_call({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    chunks = [{"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in ("a se", "cret ", "and secr", "et")]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    mw = layer()
    out = await drive(await mw(call, ScriptedNext(stream=chunks)), call)
    assert out.text == "a [x] and [x]" and mw.total == 1
