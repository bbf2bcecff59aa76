"""Reply: what comes back up the chain, JSON or a stream, with hooks for streaming.

A middleware MUST NOT wrap a streamed reply's iterator to do work "after" it: a
consumer that stops early never runs the wrapper's tail. Instead it registers:

* ``observe(fn)``   — sync ``fn(chunk)`` for every chunk that reaches the client;
* ``transform(fn)`` — sync ``fn(chunk) -> chunk | None`` (None holds the chunk back);
* ``on_complete(fn)`` — async ``fn(outcome)``, run exactly once when the response is
  over: success, error or client disconnect alike. On success the hooks run *before*
  the final byte (``data: [DONE]`` or the JSON body), so what they record is durable
  before the client sees the end. They are shielded from cancellation.

Hooks run in registration order, i.e. inner layers first. Code placed after
``call_next`` runs when the reply's headers are ready, not at its last byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

from .call import Usage
from .errors import GatewayError

__all__ = ["Reply", "Outcome", "Chunk", "Ended"]

Chunk = dict[str, Any]
Ended = Literal["complete", "client_gone", "upstream_error", "error", "timeout"]


@dataclass(slots=True)
class Outcome:
    """How a response ended, handed to every ``on_complete`` hook."""

    status: int
    ended: Ended
    usage: Usage | None = None
    error: GatewayError | None = None
    body: dict[str, Any] | None = None  # the full completion, when a layer called ``reply.collect()``
    cost_micros: int = 0
    chunks: int = 0

    @property
    def ok(self) -> bool:
        return self.ended == "complete" and self.status < 400


class Reply:
    __slots__ = ("status", "headers", "body", "chunks", "error", "_observers", "_transforms", "_hooks", "collect_body")

    def __init__(
        self,
        *,
        status: int = 200,
        body: dict[str, Any] | None = None,
        chunks: AsyncIterator[Chunk] | None = None,
        headers: dict[str, str] | None = None,
        error: GatewayError | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.chunks = chunks
        self.headers: dict[str, str] = headers if headers is not None else {}
        self.error = error
        self._observers: list[Callable[[Chunk], None]] = []
        self._transforms: list[Callable[[Chunk], Chunk | None]] = []
        self._hooks: list[Callable[[Outcome], Awaitable[None]]] = []
        self.collect_body = False

    # constructors --------------------------------------------------------------
    @classmethod
    def json(cls, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> "Reply":
        return cls(status=status, body=body, headers=headers)

    @classmethod
    def stream(cls, chunks: AsyncIterator[Chunk], headers: dict[str, str] | None = None) -> "Reply":
        return cls(status=200, chunks=chunks, headers=headers)

    @classmethod
    def from_error(cls, err: GatewayError) -> "Reply":
        return cls(status=err.status, body=err.body(), headers=dict(err.headers), error=err)

    @property
    def is_stream(self) -> bool:
        return self.chunks is not None

    # hooks ---------------------------------------------------------------------
    def observe(self, fn: Callable[[Chunk], None]) -> None:
        self._observers.append(fn)

    def transform(self, fn: Callable[[Chunk], Chunk | None]) -> None:
        self._transforms.append(fn)

    def on_complete(self, fn: Callable[[Outcome], Awaitable[None]]) -> None:
        self._hooks.append(fn)

    def collect(self) -> None:
        """Ask for the full completion in ``Outcome.body``, also for streams (assembled chunk by chunk)."""
        self.collect_body = True

    @property
    def observers(self) -> list[Callable[[Chunk], None]]:
        return self._observers

    @property
    def transforms(self) -> list[Callable[[Chunk], Chunk | None]]:
        return self._transforms

    @property
    def hooks(self) -> list[Callable[[Outcome], Awaitable[None]]]:
        return self._hooks
