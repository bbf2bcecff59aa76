"""Anthropic streaming events → OpenAI ``chat.completion.chunk`` dicts, one event at a time.

Event sequence (https://docs.anthropic.com/en/docs/build-with-claude/streaming):
``message_start`` → for each content block ``content_block_start``, ``content_block_delta``
(``text_delta`` | ``input_json_delta`` | ``thinking_delta`` | ``signature_delta``),
``content_block_stop`` → ``message_delta`` (stop_reason, cumulative usage) → ``message_stop``.
``ping`` may appear anywhere; ``error`` may arrive mid-stream (e.g. ``overloaded_error``).

The translator keeps only what later events need (ids, tool indices, usage): it never
buffers text, so every delta becomes a chunk as soon as it is fed.
"""
from __future__ import annotations

from typing import Any, Mapping

from gateway.errors import ProviderError

from .._common import ChunkStream
from .translate import FINISH_REASONS, usage_from_anthropic

__all__ = ["AnthropicStream", "error_from_event"]

# Anthropic error types that are worth another attempt (on another target, before any byte was sent).
_RETRYABLE_ERRORS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429, "timeout_error": 504}


def error_from_event(data: Mapping[str, Any], provider: str = "anthropic") -> ProviderError:
    """An in-stream ``error`` event → ProviderError (retryable when Anthropic says overloaded)."""
    err = data.get("error") if isinstance(data.get("error"), Mapping) else {}
    kind = str(err.get("type") or "api_error")
    message = f"{provider}: {err.get('message') or kind}"
    status = _RETRYABLE_ERRORS.get(kind)
    code = "rate_limit_exceeded" if kind == "rate_limit_error" else "provider_error"
    return ProviderError(code, message, upstream_status=status, retryable=status is not None, details={"upstream_type": kind})


class AnthropicStream(ChunkStream):
    """Stateful translator: ``feed(event, data)`` returns the chunks that event produces."""

    __slots__ = ("usage", "finished", "_tool_index", "_blocks")

    def __init__(self, *, model: str, provider: str = "anthropic", created: int | None = None) -> None:
        super().__init__(cid="", model=model, provider=provider, created=created)
        self.usage: dict[str, Any] = {}
        self.finished = False  # message_stop seen: the stream ended as Anthropic intended
        self._tool_index = 0
        self._blocks: dict[int, int] = {}  # content block index -> OpenAI tool_calls index

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type") or event
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index
                self._tool_index += 1
                self._blocks[int(data.get("index", 0))] = index
                call = {"index": index, "id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            if dtype == "input_json_delta" and delta.get("partial_json"):
                index = self._blocks.get(int(data.get("index", 0)))
                if index is None:
                    return []
                return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]})]
            return []  # thinking_delta, signature_delta, citations: nothing OpenAI chat can carry
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop:
                return [self._chunk({}, FINISH_REASONS.get(stop, "stop"))]
            return []
        if kind == "message_stop":
            self.finished = True
            return [self.usage_chunk()]
        if kind == "error":
            raise error_from_event(data, self.provider)
        return []  # ping, content_block_stop, and event types added later

    def usage_chunk(self) -> dict[str, Any]:
        return self._usage_chunk(usage_from_anthropic(self.usage))
