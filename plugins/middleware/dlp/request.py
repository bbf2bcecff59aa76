"""Where a request keeps its text: every slot DLP scans and may rewrite.

Mirrors ``gateway.call.iter_prompt_texts`` but yields ``(container, key)`` so the
value can be replaced in place: message content (string or content parts),
tool-call arguments, ``prompt`` and ``input`` (string or list of strings).
"""
from __future__ import annotations

from typing import Any, Iterator, MutableMapping, MutableSequence, Union

__all__ = ["Slot", "iter_slots"]

Slot = tuple[Union[MutableMapping[str, Any], MutableSequence[Any]], Union[str, int]]


def iter_slots(body: MutableMapping[str, Any]) -> Iterator[Slot]:
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, str):
                yield m, "content"
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield part, "text"
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    yield fn, "arguments"
    for k in ("prompt", "input"):
        v = body.get(k)
        if isinstance(v, str):
            yield body, k
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, str):
                    yield v, i
