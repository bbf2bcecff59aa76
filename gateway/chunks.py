"""Conversions between an OpenAI chat completion and its stream of chunks.

Used to replay cached answers as SSE, to assemble a finished stream into one
completion (cache store, tool loop), and by providers that build chunks.
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Any, Iterable

__all__ = ["new_id", "completion_to_chunks", "ChunkAccumulator", "usage_chunk"]


_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_id(prefix: str = "chatcmpl") -> str:
    """A fresh, unique completion id (random per-process prefix + counter; uuid4 cost ~6% of a cache hit)."""
    return f"{prefix}-{_ID_PREFIX}{next(_id_counter):012x}"


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def usage_chunk(cid: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage}


def completion_to_chunks(
    completion: dict[str, Any], *, pieces: int = 8, include_usage: bool = True, fresh_id: bool = True
) -> list[dict[str, Any]]:
    """Re-chunk a chat completion as a realistic stream: role, content pieces, finish, usage."""
    cid = new_id() if fresh_id else completion.get("id") or new_id()
    created = int(time.time()) if fresh_id else int(completion.get("created") or time.time())
    model = completion.get("model", "")
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]
    out: list[dict[str, Any]] = []
    for choice in completion.get("choices") or []:
        idx = choice.get("index", 0)
        msg = choice.get("message") or {}
        out.append({**base, "choices": [{"index": idx, "delta": {"role": msg.get("role", "assistant"), "content": ""}, "finish_reason": None}]})
        for piece in _split(msg.get("content") or "", pieces):
            out.append({**base, "choices": [{"index": idx, "delta": {"content": piece}, "finish_reason": None}]})
        for i, tc in enumerate(msg.get("tool_calls") or []):
            fn = tc.get("function") or {}
            delta_tc = {"index": i, "id": tc.get("id"), "type": tc.get("type", "function"), "function": {"name": fn.get("name"), "arguments": fn.get("arguments", "")}}
            out.append({**base, "choices": [{"index": idx, "delta": {"tool_calls": [delta_tc]}, "finish_reason": None}]})
        out.append({**base, "choices": [{"index": idx, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage and completion.get("usage"):
        out.append(usage_chunk(cid, created, model, completion["usage"]))
    return out


class ChunkAccumulator:
    """Assemble ``chat.completion.chunk`` dicts into one ``chat.completion`` (content, tool calls, usage)."""

    __slots__ = ("id", "created", "model", "choices", "usage", "system_fingerprint")

    def __init__(self) -> None:
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.system_fingerprint: str | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if self.id is None:
            self.id, self.created, self.model = chunk.get("id"), chunk.get("created"), chunk.get("model")
            self.system_fingerprint = chunk.get("system_fingerprint")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for ch in chunk.get("choices") or ():
            idx = ch.get("index", 0)
            st = self.choices.setdefault(idx, {"role": "assistant", "content": [], "tool_calls": {}, "finish_reason": None, "text": []})
            delta = ch.get("delta")
            if delta is None and "text" in ch:  # legacy completions stream
                st["text"].append(ch.get("text") or "")
            delta = delta or {}
            if delta.get("role"):
                st["role"] = delta["role"]
            if delta.get("content"):
                st["content"].append(delta["content"])
            for tc in delta.get("tool_calls") or ():
                slot = st["tool_calls"].setdefault(tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            if ch.get("finish_reason"):
                st["finish_reason"] = ch["finish_reason"]

    def extend(self, chunks: Iterable[dict[str, Any]]) -> "ChunkAccumulator":
        for c in chunks:
            self.add(c)
        return self

    def completion(self) -> dict[str, Any]:
        choices = []
        for idx in sorted(self.choices):
            st = self.choices[idx]
            msg: dict[str, Any] = {"role": st["role"], "content": "".join(st["content"]) if st["content"] or not st["tool_calls"] else None}
            if st["tool_calls"]:
                msg["tool_calls"] = [st["tool_calls"][i] for i in sorted(st["tool_calls"])]
            choices.append({"index": idx, "message": msg, "finish_reason": st["finish_reason"], "logprobs": None})
        out: dict[str, Any] = {
            "id": self.id or new_id(),
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model or "",
            "choices": choices,
        }
        if self.usage:
            out["usage"] = self.usage
        if self.system_fingerprint:
            out["system_fingerprint"] = self.system_fingerprint
        return out
