"""The ``mock`` provider: deterministic answers with no network, for demos, tests and benchmarks.

Knobs (config options, and per request through ``x-mock-*`` headers when
``request_overrides`` is on): latency, chunk count and delay, error status,
hang (a timeout), and a mid-stream cut. Token counts are derived from the text,
so costs and limits behave as with a real provider.

Tool-call scripting (deterministic, JSON and stream alike), for the tool loop's tests:

* the request has ``tools`` (and ``tool_choice`` is not ``"none"``), the last message is
  the user's and contains ``[[call NAME {json args}]]`` one or more times → the answer
  is those tool calls (``finish_reason: tool_calls``), ids ``call_<n>_<i>``;
* the last message(s) are ``tool`` results → the answer is ``Result: <r1>; <r2>``;
  if the last user message also says ``[[loop]]``, the same calls are made again
  instead (to exercise a round limit).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from gateway.call import Call, Target, iter_prompt_texts
from gateway.chunks import new_id
from gateway.errors import ProviderError, provider_error_from_status
from gateway.plugin import Services


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    latency_ms: float = field(default=0.0, metadata={"help": "delay before the answer (or the first chunk)"})
    chunks: int = field(default=8, metadata={"help": "content chunks per streamed answer"})
    chunk_delay_ms: float = 0.0
    reply: str | None = field(default=None, metadata={"help": "fixed answer text (default: echoes the prompt)"})
    fail_status: int | None = field(default=None, metadata={"help": "answer every request with this HTTP status"})
    fail_rate: float = field(default=0.0, metadata={"help": "fraction of requests that fail with fail_status or 500"})
    hang: bool = field(default=False, metadata={"help": "never answer (tests timeouts)"})
    cut_after_chunks: int | None = field(default=None, metadata={"help": "break the stream after N chunks"})
    embedding_dim: int = 16
    models: list[str] = field(default_factory=lambda: ["mock-1"])
    request_overrides: bool = field(default=True, metadata={"help": "honour x-mock-* request headers"})
    timeout: float = 30.0


_CALL = re.compile(r"\[\[call\s+([A-Za-z0-9_.\-]+)(?:\s+(\{.*?\}))?\s*\]\]", re.DOTALL)


def _scripted_tool_calls(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tool calls the script asks for, or None for an ordinary answer."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not messages or not body.get("tools") or body.get("tool_choice") == "none":
        return None
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = last_user.get("content") if last_user else None
    if not isinstance(text, str):
        return None
    if messages[-1].get("role") == "tool" and "[[loop]]" not in text:
        return None
    if messages[-1].get("role") not in ("user", "tool"):
        return None
    rounds = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    calls = []
    for i, m in enumerate(_CALL.finditer(text)):
        calls.append({"id": f"call_{rounds}_{i}", "type": "function",
                      "function": {"name": m.group(1), "arguments": m.group(2) or "{}"}})
    return calls or None


def _tool_results_text(body: dict[str, Any]) -> str | None:
    """``Result: ...`` when the conversation ends with tool results."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    results: list[str] = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        content = m.get("content")
        results.append(content if isinstance(content, str) else json.dumps(content))
    return "Result: " + "; ".join(reversed(results)) if results else None


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


class MockProvider:
    Config = MockConfig
    requires_api_key = False

    def __init__(self, config: MockConfig, services: Services) -> None:
        self.cfg = config
        self.calls = 0

    # knobs ------------------------------------------------------------------------
    def _knobs(self, call: Call) -> dict[str, Any]:
        c = self.cfg
        k: dict[str, Any] = {
            "latency_ms": c.latency_ms, "chunks": c.chunks, "chunk_delay_ms": c.chunk_delay_ms, "reply": c.reply,
            "status": c.fail_status if (c.fail_status and (c.fail_rate <= 0 or random.random() < c.fail_rate)) else None,
            "hang": c.hang, "cut_after": c.cut_after_chunks, "retry_after": None,
        }
        if c.fail_rate > 0 and not c.fail_status and random.random() < c.fail_rate:
            k["status"] = 500
        if c.request_overrides:
            h = call.headers
            for header, key, conv in (
                ("x-mock-latency-ms", "latency_ms", float), ("x-mock-chunks", "chunks", int),
                ("x-mock-chunk-delay-ms", "chunk_delay_ms", float), ("x-mock-status", "status", int),
                ("x-mock-cut-after", "cut_after", int), ("x-mock-retry-after", "retry_after", float),
            ):
                v = h.get(header)
                if v:
                    try:
                        k[key] = conv(v)
                    except ValueError:
                        pass
            if h.get("x-mock-reply"):
                k["reply"] = h["x-mock-reply"]
            if h.get("x-mock-hang"):
                k["hang"] = True
        return k

    async def _before(self, k: dict[str, Any], target: Target) -> None:
        self.calls += 1
        if k["hang"]:
            await asyncio.sleep(target.timeout or self.cfg.timeout)
            raise ProviderError("provider_timeout", "mock upstream timed out", retryable=True)
        if k["latency_ms"]:
            await asyncio.sleep(k["latency_ms"] / 1000)
        if k["status"]:
            raise provider_error_from_status(int(k["status"]), f"mock upstream error {k['status']}", retry_after=k["retry_after"])

    def _answer(self, body: dict[str, Any], k: dict[str, Any]) -> tuple[str, int]:
        prompt = "\n".join(iter_prompt_texts(body))
        tool_text = _tool_results_text(body)
        if k["reply"] is not None:
            text = k["reply"]
        elif tool_text is not None:
            text = tool_text
        else:
            last = ""
            for m in reversed(body.get("messages") or []):
                if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                    last = m["content"]
                    break
            text = f"Mock answer to: {(last or prompt)[:200]}"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and _tokens(text) > max_tokens:
            text = text[: max_tokens * 4]
        return text, _tokens(prompt)

    @staticmethod
    def _usage(prompt_tokens: int, text: str) -> dict[str, int]:
        completion = _tokens(text)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}

    # Provider contract ----------------------------------------------------------------
    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        k = self._knobs(call)
        await self._before(k, target)
        text, ptoks = self._answer(body, k)
        n = body.get("n") or 1
        tool_calls = _scripted_tool_calls(body)
        if tool_calls:
            args = "".join(tc["function"]["arguments"] for tc in tool_calls)
            return {
                "id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": target.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                             "finish_reason": "tool_calls", "logprobs": None}],
                "usage": self._usage(ptoks, args),
            }
        return {
            "id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": target.model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None} for i in range(n)],
            "usage": self._usage(ptoks, text * n),
        }

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        k = self._knobs(call)
        await self._before(k, target)
        text, ptoks = self._answer(body, k)
        cid, created = new_id(), int(time.time())
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": target.model}
        tool_calls = _scripted_tool_calls(body)
        if tool_calls:
            yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]}
            for i, tc in enumerate(tool_calls):
                yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, **tc}]}, "finish_reason": None}]}
            yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
            yield {**base, "choices": [], "usage": self._usage(ptoks, "".join(tc["function"]["arguments"] for tc in tool_calls))}
            return
        pieces = max(1, int(k["chunks"]))
        size = max(1, -(-len(text) // pieces))
        parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        delay = k["chunk_delay_ms"] / 1000
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for i, part in enumerate(parts):
            if k["cut_after"] is not None and i >= k["cut_after"]:
                raise ProviderError("provider_error", "mock upstream stream was cut")
            if delay:
                await asyncio.sleep(delay)
            yield {**base, "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {**base, "choices": [], "usage": self._usage(ptoks, text)}

    async def completions(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        k = self._knobs(call)
        await self._before(k, target)
        text, ptoks = self._answer(body, k)
        return {
            "id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": target.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": self._usage(ptoks, text),
        }

    async def completions_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        full = await self.completions(body, target, call)
        base = {"id": full["id"], "object": "text_completion", "created": full["created"], "model": full["model"]}
        text = full["choices"][0]["text"]
        size = max(1, -(-len(text) // max(1, self.cfg.chunks)))
        for i in range(0, len(text), size):
            yield {**base, "choices": [{"index": 0, "text": text[i : i + size], "finish_reason": None, "logprobs": None}]}
        yield {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}
        yield {**base, "choices": [], "usage": full["usage"]}

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        k = self._knobs(call)
        await self._before(k, target)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dim = int(body.get("dimensions") or self.cfg.embedding_dim)
        data, tokens = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += _tokens(text)
            digest = hashlib.sha256(text.encode()).digest() * (dim // 32 + 1)
            vec = [(b - 127.5) / 127.5 for b in digest[:dim]]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in vec]})
        return {"object": "list", "data": data, "model": target.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def list_models(self) -> list[str]:
        return list(self.cfg.models)
