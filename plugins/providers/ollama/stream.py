"""Ollama ``/api/chat`` NDJSON stream → OpenAI chunks, one line at a time.

Each line is an object with the new ``message.content`` (and, from tool-capable models,
whole ``message.tool_calls``); the last has ``done: true``, ``done_reason`` and the
counts ``prompt_eval_count`` / ``eval_count``. A failure mid-stream is a line
``{"error": "..."}`` (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion).
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

from gateway.errors import ProviderError

from .translate import finish_reason, tool_call_from_ollama, usage_from_ollama

__all__ = ["OllamaStream"]


class OllamaStream:
    """Stateful translator: ``feed(line)`` returns the chunks that line produces."""

    __slots__ = ("id", "model", "created", "provider", "finished", "_started", "_tools")

    def __init__(self, *, model: str, provider: str = "ollama", created: int | None = None) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.model = model
        self.provider = provider
        self.created = created or int(time.time())
        self.finished = False
        self._started = False
        self._tools = 0

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
        }

    def feed(self, line: Mapping[str, Any]) -> list[dict[str, Any]]:
        if line.get("error"):
            raise ProviderError("provider_error", f"{self.provider}: {line['error']}")
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            self.model = line.get("model") or self.model
            out.append(self._chunk({"role": "assistant", "content": ""}))
        msg = line.get("message") or {}
        if msg.get("content"):
            out.append(self._chunk({"content": msg["content"]}))
        for call in msg.get("tool_calls") or ():
            out.append(self._chunk({"tool_calls": [{"index": self._tools, **tool_call_from_ollama(call)}]}))
            self._tools += 1
        if line.get("done"):
            self.finished = True
            out.append(self._chunk({}, finish_reason(line.get("done_reason"), tool_calls=self._tools > 0)))
            out.append({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_from_ollama(line),
            })
        return out
