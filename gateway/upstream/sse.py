"""Incremental readers for upstream streams: SSE (``data:`` events) and NDJSON.

They read line by line from ``aiohttp.ClientResponse.content``, so events are
yielded as soon as they arrive, never after buffering the whole stream.
"""
from __future__ import annotations

from typing import AsyncIterator

import aiohttp

__all__ = ["SSEEvent", "iter_sse", "iter_ndjson_lines", "parse_sse_lines"]

MAX_LINE = 4 * 1024 * 1024


class SSEEvent:
    __slots__ = ("event", "data")

    def __init__(self, event: str | None, data: str) -> None:
        self.event = event
        self.data = data

    def __repr__(self) -> str:
        return f"SSEEvent({self.event!r}, {self.data[:60]!r})"


def parse_sse_lines(lines: list[str]) -> list[SSEEvent]:
    """Pure parser for tests and fuzzing: lines (without newlines) → events."""
    out: list[SSEEvent] = []
    event: str | None = None
    data: list[str] = []
    for line in lines + [""]:
        if line == "":
            if data:
                out.append(SSEEvent(event, "\n".join(data)))
            event, data = None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    return out


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    """Yield SSE events from an upstream response as they arrive."""
    event: str | None = None
    data: list[str] = []
    content = resp.content
    while True:
        raw = await content.readline()
        if not raw:
            break
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data))


async def iter_ndjson_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield non-empty lines of an NDJSON stream (Ollama) as they arrive."""
    content = resp.content
    while True:
        raw = await content.readline()
        if not raw:
            break
        raw = raw.strip()
        if raw:
            yield raw
