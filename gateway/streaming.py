"""StreamPump: what happens to each chunk of a streamed reply on its way to the client.

Shared by the HTTP writer and ``gateway.testing`` so a plugin tested alone sees
exactly what it sees in the server: transforms in order (None holds the chunk back),
then observers, then usage capture and, if asked, assembly of the full completion.
"""
from __future__ import annotations

from typing import Any

from .call import Usage
from .chunks import ChunkAccumulator
from .reply import Chunk, Reply

__all__ = ["StreamPump"]


class StreamPump:
    __slots__ = ("_transforms", "_observers", "_acc", "usage", "chunks", "_strip_usage", "_text")

    def __init__(self, reply: Reply, *, client_include_usage: bool = True) -> None:
        self._transforms = reply.transforms
        self._observers = reply.observers
        self._acc = ChunkAccumulator() if reply.collect_body else None
        self.usage: Usage | None = None
        self.chunks = 0
        self._strip_usage = not client_include_usage
        self._text: list[str] = []  # what was streamed, to count tokens when the provider reports none

    def process(self, chunk: Chunk) -> Chunk | None:
        """Return the chunk to send, or None when it is held back or not for the client."""
        for t in self._transforms:
            chunk = t(chunk)  # type: ignore[assignment]
            if chunk is None:
                return None
        for o in self._observers:
            o(chunk)
        if self._acc is not None:
            self._acc.add(chunk)
        usage = chunk.get("usage")
        if self.usage is None:
            for ch in chunk.get("choices") or ():
                delta = ch.get("delta")
                piece = delta.get("content") if delta else ch.get("text")
                if piece:
                    self._text.append(piece)
        if usage:
            self.usage = Usage.from_openai(usage)
            if self._strip_usage:
                if not chunk.get("choices"):
                    return None  # the usage-only chunk the gateway asked for itself
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        self.chunks += 1
        return chunk

    def text(self) -> str:
        return "".join(self._text)

    def body(self) -> dict[str, Any] | None:
        return self._acc.completion() if self._acc is not None else None
