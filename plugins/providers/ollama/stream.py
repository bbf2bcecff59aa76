"""Ollama ``/api/chat`` NDJSON stream → OpenAI chunks, one line at a time.

Each line is an object with the new ``message.content`` (and, from tool-capable models,
whole ``message.tool_calls``); the last has ``done: true``, ``done_reason`` and the
counts ``prompt_eval_count`` / ``eval_count``. A failure mid-stream is a line
``{"error": "..."}`` (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion).
"""
from __future__ import annotations

from typing import Any, Mapping

from gateway.errors import ProviderError

from .._common import ChunkStream, new_completion_id
from .translate import finish_reason, tool_call_from_ollama, usage_from_ollama

__all__ = ["OllamaStream"]


class OllamaStream(ChunkStream):
    """Stateful translator: ``feed(line)`` returns the chunks that line produces."""

    __slots__ = ("finished", "_started", "_tools")

    def __init__(self, *, model: str, provider: str = "ollama", created: int | None = None) -> None:
        super().__init__(cid=new_completion_id(), model=model, provider=provider, created=created)
        self.finished = False
        self._started = False
        self._tools = 0

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
            out.append(self._usage_chunk(usage_from_ollama(line)))
        return out
