"""DLP through a real gateway process and the official OpenAI SDK.

The upstream (a loopback OpenAI-compatible server, or the echoing mock provider) must
only ever see placeholders; the SDK client gets its own values back, in JSON and in
streams; a blocked request is a 400 ``dlp_violation`` and reaches no upstream.
"""
from __future__ import annotations

import openai
import pytest

from tests.fixtures.gateway import base_config

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"


def _config(tmp_path, upstream, **dlp):
    return base_config(
        tmp_path,
        providers={"mock": {"type": "mock", "chunks": 12},
                   "up": {"type": "openai", "base_url": upstream.base_url, "api_key": "sk-upstream-test"}},
        models={"mock": {"targets": ["mock/mock-1"]}, "up": {"targets": ["up/gpt-test"]}},
        pipeline=[{"dlp": {"actions": {"credit_card": "block"}, **dlp}}, {"router": {}}],
    )


@pytest.fixture
def client(upstream, gateway_factory, tmp_path):
    gw = gateway_factory(_config(tmp_path, upstream))
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)


def test_json_upstream_sees_only_placeholders_and_the_client_gets_the_value(upstream, client):
    upstream.reply = "I will write to [EMAIL_1] today."
    out = client.chat.completions.create(model="up", messages=[{"role": "user", "content": f"Write to {EMAIL}"}])
    assert upstream.requests[-1]["messages"][0]["content"] == "Write to [EMAIL_1]"
    assert EMAIL not in str(upstream.requests)
    assert out.choices[0].message.content == f"I will write to {EMAIL} today."


def test_stream_upstream_sees_only_placeholders(upstream, client):
    chunks = list(client.chat.completions.create(model="up", stream=True,
                                                 messages=[{"role": "user", "content": f"Write to {EMAIL}"}]))
    assert upstream.requests[-1]["messages"][0]["content"] == "Write to [EMAIL_1]"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("part0 ")


def test_stream_placeholders_split_across_chunks_are_restored_for_the_sdk(client):
    # The mock provider echoes the (masked) prompt in 12 chunks, splitting the placeholders.
    prompt = f"Reply to {EMAIL} and {EMAIL}, cc ops@example.com"
    chunks = list(client.chat.completions.create(model="mock", stream=True, messages=[{"role": "user", "content": prompt}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Mock answer to: {prompt}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_non_stream_echo_round_trip(client):
    prompt = f"Reply to {EMAIL}"
    out = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": prompt}])
    assert out.choices[0].message.content == f"Mock answer to: {prompt}"


def test_block_is_a_400_with_the_error_body_and_nothing_reaches_upstream(upstream, client):
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="up", messages=[{"role": "user", "content": f"card {CARD}"}])
    err = exc.value
    assert err.status_code == 400 and err.code == "dlp_violation"
    assert err.body["details"] == {"detectors": {"credit_card": 1}}
    assert "4111" not in str(err.body) and "4111" not in err.message
    assert len(upstream.requests) == before
