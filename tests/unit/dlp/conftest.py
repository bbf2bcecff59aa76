from __future__ import annotations

from typing import Any

from gateway.testing import make_services
from plugins.middleware.dlp import Dlp, DlpConfig
from gateway.schema import convert


def make_dlp(**options: Any) -> Dlp:
    """A Dlp built from YAML-shaped options, validated like the server does."""
    return Dlp(convert(DlpConfig, options, "dlp"), make_services())


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "mock", "messages": [{"role": "user", "content": text}], **extra}


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    d = dict(delta)
    if content is not None:
        d["content"] = content
    return {"id": "c1", "object": "chat.completion.chunk", "model": "mock-1",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}
