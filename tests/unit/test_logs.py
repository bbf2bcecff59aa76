"""Structured JSON logs: the formatter, LOG_LEVEL, and the per-request line (no text, no secrets)."""
from __future__ import annotations

import io
import logging
import time
from types import SimpleNamespace

import orjson
import pytest

from gateway.logs import JsonFormatter, configure_logging, log_request, request_fields

SECRET_KEY = "lgw_proj_abcdef_SECRETSECRETSECRET"
PROMPT = "my password is hunter2"


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    wl = logging.getLogger("watchllm").level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    logging.getLogger("watchllm").setLevel(wl)


def _call_and_outcome():
    facts = SimpleNamespace(model_served="mock-1", provider="mock", upstream_ms=12.5, ttft_ms=None, attempts=1,
                            cached="exact", tokens_saved=15, cost_saved_micros=10, dlp_findings={"email": 1})
    key = SimpleNamespace(id="key_123", secret=SECRET_KEY, raw=SECRET_KEY)
    call = SimpleNamespace(id="req_1", project_id="proj_1", key=key, endpoint="chat.completions", model="mock",
                           started=time.perf_counter() - 0.25, facts=facts, created_at=time.time(),
                           body={"messages": [{"role": "user", "content": PROMPT}]}, headers={"authorization": f"Bearer {SECRET_KEY}"},
                           prompt_text=lambda: PROMPT)
    outcome = SimpleNamespace(status=200, ended="complete", error=None, cost_micros=460,
                              usage=SimpleNamespace(prompt_tokens=12, completion_tokens=40), body={"content": "reply text"})
    return call, outcome


def test_formatter_writes_one_json_object_with_fields_and_exception():
    fmt = JsonFormatter()
    rec = logging.LogRecord("watchllm.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    rec.fields = {"a": 1, "level": "spoofed", "obj": object()}
    out = orjson.loads(fmt.format(rec))
    assert out["msg"] == "hello world" and out["level"] == "WARNING" and out["logger"] == "watchllm.x" and out["a"] == 1
    assert out["ts"].endswith("Z") and "obj" in out
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        rec = logging.LogRecord("watchllm.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = fmt.format(rec)
    assert "\n" not in line and "ValueError: boom" in orjson.loads(line)["exc"]


def test_configure_logging_honours_log_level_and_format(monkeypatch, restore_root):
    buf = io.StringIO()
    monkeypatch.setenv("LOG_LEVEL", "warning")
    configure_logging(stream=buf)
    logging.getLogger("watchllm.test").info("hidden")
    logging.getLogger("watchllm.test").warning("shown")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["msg"] == "shown"

    buf = io.StringIO()
    configure_logging("DEBUG", fmt="text", stream=buf)
    logging.getLogger("watchllm.test").debug("plain")
    assert "DEBUG watchllm.test plain" in buf.getvalue()
    assert len(logging.getLogger().handlers) == 1  # replaced, not stacked

    buf = io.StringIO()
    monkeypatch.setenv("LOG_LEVEL", "nonsense")
    configure_logging(stream=buf)
    assert logging.getLogger().level == logging.INFO


def test_request_line_has_the_fields_and_no_text_or_secrets(restore_root):
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    call, outcome = _call_and_outcome()
    log_request(call, outcome)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["logger"] == "watchllm.request" and line["level"] == "INFO" and line["msg"] == "request"
    assert line["request_id"] == "req_1" and line["project_id"] == "proj_1" and line["key_id"] == "key_123"
    assert line["model"] == "mock" and line["provider"] == "mock" and line["status"] == 200 and line["cached"] == "exact"
    assert line["cost_micros"] == 460 and line["cost_usd"] == pytest.approx(0.00046)
    assert line["prompt_tokens"] == 12 and line["completion_tokens"] == 40 and 200 <= line["latency_ms"] < 5000
    text = buf.getvalue()
    for secret in (SECRET_KEY, PROMPT, "hunter2", "reply text", "Bearer"):
        assert secret not in text


def test_request_line_is_skipped_below_info_and_never_raises(restore_root):
    buf = io.StringIO()
    configure_logging("WARNING", stream=buf)
    call, outcome = _call_and_outcome()
    log_request(call, outcome)
    assert buf.getvalue() == ""
    configure_logging("INFO", stream=buf)
    log_request(SimpleNamespace(), SimpleNamespace())  # a bare call: fields are None, no exception
    assert orjson.loads(buf.getvalue().splitlines()[-1])["request_id"] is None
    bad = SimpleNamespace(started="x", facts=None, key=None)
    log_request(bad, SimpleNamespace(cost_micros="not a number"))  # broken values: swallowed
    assert set(request_fields(SimpleNamespace(), SimpleNamespace())) >= {"request_id", "status", "latency_ms", "cost_usd", "cached"}


async def test_request_line_from_a_real_request_through_the_app(aiohttp_client, restore_root, monkeypatch):
    """The fields are read from the real Call/outcome objects (the hook the server calls after the last byte)."""
    from gateway.config import parse_config
    from gateway.server import build_app

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    cfg = parse_config({"providers": {"mock": {"type": "mock"}}, "models": {"mock": {"targets": ["mock/mock-1"]}},
                        "pipeline": [{"router": {}}]}, "<test>", env={})
    app = build_app(cfg)  # the server's final hook logs the request line after the usage record
    client = await aiohttp_client(app)
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    r = await client.post("/v1/chat/completions", json={"model": "mock", "messages": [{"role": "user", "content": PROMPT}]})
    assert r.status == 200, await r.text()
    lines = [orjson.loads(x) for x in buf.getvalue().splitlines() if '"watchllm.request"' in x]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == r.headers.get("x-request-id") and line["model"] == "mock" and line["status"] == 200
    assert line["provider"] == "mock" and line["latency_ms"] > 0 and line["prompt_tokens"] > 0
    assert PROMPT not in buf.getvalue()


def _only_our_handler(handler: logging.Handler) -> None:
    """pytest adds its capture handlers to the root logger; the buffered path runs only when ours is alone."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h is not handler:
            root.removeHandler(h)


async def test_request_lines_are_buffered_then_written_in_order_with_other_records(restore_root, monkeypatch):
    import asyncio

    monkeypatch.setenv("LOG_FLUSH_MS", "80")
    buf = io.StringIO()
    handler = configure_logging("INFO", stream=buf)
    _only_our_handler(handler)
    call, outcome = _call_and_outcome()
    log_request(call, outcome)
    log_request(call, outcome)
    assert buf.getvalue() == ""  # held for at most LOG_FLUSH_MS
    await asyncio.sleep(0.3)
    lines = [orjson.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 2 and all(x["logger"] == "watchllm.request" and x["request_id"] == "req_1" for x in lines)
    # the same fields, in the same order, as the formatter writes for a logged record
    rec = logging.LogRecord("watchllm.request", logging.INFO, __file__, 1, "request", (), None)
    rec.fields = request_fields(call, outcome)
    expected = orjson.loads(JsonFormatter().format(rec))
    assert list(lines[0]) == list(expected)
    assert {k: v for k, v in lines[0].items() if k not in ("ts", "latency_ms")} == \
        {k: v for k, v in expected.items() if k not in ("ts", "latency_ms")}
    assert lines[0]["ts"][:16] == expected["ts"][:16] and lines[0]["ts"].endswith("Z") and len(lines[0]["ts"]) == 24
    # any other record writes what is buffered first, then itself, at once
    log_request(call, outcome)
    logging.getLogger("watchllm.test").warning("after")
    tail = [orjson.loads(x) for x in buf.getvalue().splitlines()[2:]]
    assert [x["msg"] for x in tail] == ["request", "after"]


async def test_request_lines_reach_a_pipe_as_whole_lines_in_writes_of_at_most_pipe_buf(restore_root, monkeypatch):
    import os
    import select

    monkeypatch.setenv("LOG_FLUSH_MS", "10000")  # only the explicit flush writes
    r, w = os.pipe()
    os.set_blocking(r, False)
    stream = os.fdopen(w, "w")
    try:
        handler = configure_logging("INFO", stream=stream)
        _only_our_handler(handler)
        call, outcome = _call_and_outcome()
        for _ in range(60):  # ~20 KB: several writes
            log_request(call, outcome)
        with pytest.raises(BlockingIOError):
            os.read(r, 65536)
        from gateway.logs import flush_logs

        flush_logs()
        reads = []
        while True:
            try:
                reads.append(os.read(r, 65536))
            except BlockingIOError:
                break
        data = b"".join(reads)
        lines = data.splitlines()
        assert len(lines) == 60 and all(orjson.loads(x)["request_id"] == "req_1" for x in lines)
        assert len(data) > 2 * select.PIPE_BUF
    finally:
        stream.close()
        os.close(r)


def test_request_line_without_a_running_loop_or_with_flush_off_is_written_at_once(restore_root, monkeypatch):
    buf = io.StringIO()
    handler = configure_logging("INFO", stream=buf)
    _only_our_handler(handler)
    call, outcome = _call_and_outcome()
    log_request(call, outcome)  # no event loop here
    assert len(buf.getvalue().splitlines()) == 1
    monkeypatch.setenv("LOG_FLUSH_MS", "0")
    buf = io.StringIO()
    _only_our_handler(configure_logging("INFO", stream=buf))
    log_request(call, outcome)
    assert len(buf.getvalue().splitlines()) == 1


def test_fields_of_the_gateways_own_call_match_the_generic_reading():
    from gateway.call import ApiKeyInfo, Call, Project, Usage
    from gateway.errors import GatewayError
    from gateway.reply import Outcome

    for key, project, err, usage in ((ApiKeyInfo(id="key_9", project_id="p9"), Project(id="p9"), None, Usage(3, 4, 7)),
                                     (None, None, GatewayError("rate_limit_exceeded", "slow down"), None)):
        call = Call(id="req_9", endpoint="chat.completions", body={"model": "secret-ish"}, headers={}, key=key, project=project)
        call.facts.provider, call.facts.cached, call.facts.attempts = "mock", "exact", 2
        outcome = Outcome(status=429 if err else 200, ended="complete", usage=usage, error=err, cost_micros=1234)
        typed = request_fields(call, outcome, known_models={"mock"})
        plain = SimpleNamespace(**{k: getattr(call, k) for k in ("id", "endpoint", "model", "project_id", "key", "facts", "started")})
        generic = request_fields(plain, SimpleNamespace(**{k: getattr(outcome, k) for k in ("status", "ended", "usage", "error", "cost_micros")}),
                                 known_models={"mock"})
        assert typed.pop("latency_ms") >= 0 and generic.pop("latency_ms") >= 0
        assert typed == generic and typed["model"] == "other"
