"""Gemini ``streamGenerateContent?alt=sse`` events → OpenAI chunks, one event at a time.

Each SSE ``data:`` is a whole GenerateContentResponse holding only the *new* parts
(https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent).
There is no end marker: the last event carries ``finishReason`` and the final
``usageMetadata``, then the connection closes, so ``finish()`` emits the usage chunk.
Function calls arrive whole, never split, so each becomes one complete tool-call delta.
"""
from __future__ import annotations

from typing import Any, Mapping

from gateway.errors import ProviderError

from .._common import ChunkStream, new_completion_id
from .translate import finish_reason, function_call_to_tool_call, usage_from_gemini

__all__ = ["GeminiStream"]


class _Candidate:
    __slots__ = ("tools", "finished")

    def __init__(self) -> None:
        self.tools = 0
        self.finished = False


class GeminiStream(ChunkStream):
    """Stateful translator: ``feed(data)`` per event, ``finish()`` when the upstream closes."""

    __slots__ = ("usage", "_candidates")

    def __init__(self, *, model: str, provider: str = "gemini", created: int | None = None) -> None:
        super().__init__(cid="", model=model, provider=provider, created=created)
        self.usage: Mapping[str, Any] = {}
        self._candidates: dict[int, _Candidate] = {}

    def feed(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if isinstance(data.get("error"), Mapping):
            err = data["error"]
            raise ProviderError("provider_error", f"{self.provider}: {err.get('message') or err.get('status') or 'stream error'}")
        if not self.id:
            self.id = data.get("responseId") or new_completion_id()
            self.model = data.get("modelVersion") or self.model
        if data.get("usageMetadata"):
            self.usage = data["usageMetadata"]
        out: list[dict[str, Any]] = []
        candidates = data.get("candidates") or ()
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason") and not self._candidates:
            self._candidates[0] = _Candidate()
            self._candidates[0].finished = True
            return [self._chunk({"role": "assistant", "content": ""}), self._chunk({}, "content_filter")]
        for pos, cand in enumerate(candidates):
            index = int(cand.get("index", pos))
            state = self._candidates.get(index)
            if state is None:
                state = self._candidates[index] = _Candidate()
                out.append(self._chunk({"role": "assistant", "content": ""}, index=index))
            for part in (cand.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    call = function_call_to_tool_call(part)
                    out.append(self._chunk({"tool_calls": [{"index": state.tools, **call}]}, index=index))
                    state.tools += 1
                elif part.get("text") and not part.get("thought"):
                    out.append(self._chunk({"content": part["text"]}, index=index))
            if cand.get("finishReason") and not state.finished:
                state.finished = True
                out.append(self._chunk({}, finish_reason(cand["finishReason"], tool_calls=state.tools > 0), index=index))
        return out

    @property
    def finished(self) -> bool:
        return bool(self._candidates) and all(c.finished for c in self._candidates.values())

    def finish(self) -> list[dict[str, Any]]:
        """The upstream closed: the usage chunk, or an error if Gemini never said it was done."""
        if not self.finished:
            raise ProviderError("provider_error", f"{self.provider}: stream ended before a finishReason")
        return [self._usage_chunk(usage_from_gemini(self.usage))]
