"""Write a Reply to the client, JSON or SSE, and run its completion hooks exactly once.

Order on success: hooks (usage durable, budget settled, cache stored) run *before*
the final byte — the JSON body, or ``data: [DONE]`` — so a client that has its
answer has its usage record too. On client disconnect or error they run after.
Hooks are shielded from the cancellation that aiohttp delivers on disconnect: they start
inline, and only if one of them waits (a commit, a Redis call) does the rest move into a
shielded Task. Most never wait, and a Task per request was ~9% of an exact cache hit's
instructions (measured with callgrind).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

import orjson
from aiohttp import web

from ..call import Call, Usage
from ..errors import GatewayError
from ..pricing import micros_to_usd
from ..reply import Outcome, Reply
from ..streaming import StreamPump

__all__ = ["ReplyWriter", "Sink", "AiohttpSink"]

log = logging.getLogger("watchllm.http")

_JSON = "application/json"
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

FinalHook = Callable[[Call, Outcome], Awaitable[None]]


async def _run_hooks(reply: Reply, outcome: Outcome, final: FinalHook | None, call: Call) -> None:
    for hook in reply.hooks:
        try:
            await hook(outcome)
        except Exception:  # one failing hook must not stop the others
            log.exception("completion hook failed", extra={"request_id": call.id})
    if final is not None:
        try:
            await final(call, outcome)
        except Exception:
            log.exception("usage hook failed", extra={"request_id": call.id})


async def run_hooks_shielded(reply: Reply, outcome: Outcome, final: FinalHook | None, call: Call) -> None:
    coro = _run_hooks(reply, outcome, final, call)
    try:
        yielded = coro.send(None)  # hooks that never suspend finish here, with no Task to create
    except StopIteration:
        return
    task = asyncio.ensure_future(_resume(coro, yielded))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The client went away while hooks ran: let them finish anyway, then propagate.
        await asyncio.wait({task})
        raise


async def _resume(coro: Any, yielded: Any) -> None:
    """Go on driving a hooks coroutine that suspended (``yielded``: what it waits on) inside a Task."""
    while True:
        try:
            value = await _Await(yielded)
        except BaseException as exc:  # handed to the hooks coroutine at its await, as a Task would
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return


class _Await:
    __slots__ = ("fut",)

    def __init__(self, fut: Any) -> None:
        self.fut = fut

    def __await__(self) -> Any:
        return (yield self.fut)


def _completion_text(body: dict[str, Any]) -> str:
    parts = []
    for choice in body.get("choices") or ():
        msg = choice.get("message")
        text = msg.get("content") if isinstance(msg, dict) else choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


class Sink(Protocol):
    """Where a response goes: aiohttp's response objects, or the lean front (``gateway/http/fastpath.py``)."""

    def send(self, status: int, headers: dict[str, str], body: bytes) -> Any:
        """A whole response at once; returns what the server's handler returns."""

    async def start(self, status: int, headers: dict[str, str]) -> None:
        """Send the status and headers of a streamed (chunked) response."""

    async def write(self, data: bytes) -> None:
        """One piece of a streamed body (raises ``ConnectionResetError`` once the client is gone)."""

    async def end(self) -> None:
        """Finish a streamed body."""

    def done(self) -> Any:
        """After a stream: what the server's handler returns."""


class AiohttpSink:
    __slots__ = ("request", "resp")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.resp: web.StreamResponse | None = None

    def send(self, status: int, headers: dict[str, str], body: bytes) -> web.Response:
        return web.Response(status=status, body=body, headers=headers)

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.resp = web.StreamResponse(status=status, headers=headers)
        await self.resp.prepare(self.request)

    async def write(self, data: bytes) -> None:
        assert self.resp is not None
        await self.resp.write(data)

    async def end(self) -> None:
        if self.resp is not None:
            await self.resp.write_eof()

    def done(self) -> web.StreamResponse | None:
        return self.resp


class ReplyWriter:
    """Turns a Reply into a response through a Sink. One instance per server."""

    def __init__(self, *, pricing: Any, body_fields: bool = False, final_hook: FinalHook | None = None) -> None:
        self.pricing = pricing
        self.body_fields = body_fields
        self.final_hook = final_hook

    def _cost(self, call: Call, usage: Usage | None) -> int:
        if call.facts.cached:
            return 0
        return self.pricing.cost_micros(call.facts.model_served or call.model, usage)

    def _estimate(self, call: Call, completion_text: str) -> Usage | None:
        """Tokens counted locally when the provider reported none (some streams, cut streams)."""
        if call.facts.cached or call.facts.provider is None:
            return None
        messages = call.body.get("messages")
        return self.pricing.estimate_usage(
            call.facts.model_served or call.model, call.prompt_text(), completion_text,
            messages=len(messages) if isinstance(messages, list) else 0,
        )

    def _headers(self, call: Call, reply: Reply) -> dict[str, str]:
        h = dict(reply.headers)
        h.update(call.reply_headers)
        h["x-request-id"] = call.id
        h.setdefault("x-watchllm-cached", "true" if call.facts.cached else "false")
        if call.facts.provider:
            h["x-watchllm-provider"] = call.facts.provider
        return h

    async def write(self, sink: Sink, call: Call, reply: Reply) -> Any:
        if reply.chunks is not None:
            return await self._write_stream(sink, call, reply)
        return await self._write_json(sink, call, reply)

    async def _write_json(self, sink: Sink, call: Call, reply: Reply) -> Any:
        body = reply.body or {}
        ok = reply.status < 400
        usage = Usage.from_openai(body.get("usage")) if ok else None
        if ok and usage is None and call.endpoint != "embeddings":
            usage = self._estimate(call, _completion_text(body))
        outcome = Outcome(
            status=reply.status,
            ended="complete" if ok else ("upstream_error" if reply.error and reply.error.code.startswith("provider") else "error"),
            usage=usage,
            error=reply.error,
            body=body if ok else None,
        )
        outcome.cost_micros = self._cost(call, usage) if ok else 0
        await run_hooks_shielded(reply, outcome, self.final_hook, call)
        headers = self._headers(call, reply)
        latency_ms = (time.perf_counter() - call.started) * 1000
        headers["x-watchllm-latency-ms"] = f"{latency_ms:.1f}"
        headers["x-watchllm-cost-usd"] = micros_to_usd(outcome.cost_micros)
        if self.body_fields and ok and isinstance(reply.body, dict):
            body = {**body, "x_watchllm": {
                "request_id": call.id, "cached": bool(call.facts.cached), "provider": call.facts.provider,
                "cost_usd": headers["x-watchllm-cost-usd"], "latency_ms": round(latency_ms, 1),
                "tokens_saved": call.facts.tokens_saved,
            }}
        headers["Content-Type"] = _JSON
        return sink.send(reply.status, headers, orjson.dumps(body))

    async def _write_stream(self, sink: Sink, call: Call, reply: Reply) -> Any:
        headers = self._headers(call, reply)
        headers.update(_SSE_HEADERS)
        headers["x-watchllm-latency-ms"] = f"{(time.perf_counter() - call.started) * 1000:.1f}"
        # The cost of a live stream is known only at its end (see the usage record and metrics).
        headers["x-watchllm-cost-usd"] = "0.000000" if call.facts.cached else "pending"
        pump = StreamPump(reply, client_include_usage=call.client_include_usage)
        outcome = Outcome(status=200, ended="complete")
        chunks = reply.chunks
        assert chunks is not None
        try:
            await sink.start(200, headers)
            first = True
            async for chunk in chunks:
                out = pump.process(chunk)
                if out is None:
                    continue
                if first:
                    first = False
                    call.facts.ttft_ms = (time.perf_counter() - call.started) * 1000
                await sink.write(b"data: " + orjson.dumps(out) + b"\n\n")
        except GatewayError as err:
            outcome.ended, outcome.error = "upstream_error", err
            outcome.status = err.status
            await self._finish(call, reply, pump, outcome)
            await self._send_error_event(sink, err)
            return sink.done()
        except (asyncio.CancelledError, ConnectionResetError) as exc:
            outcome.ended = "client_gone"
            outcome.status = 499
            await self._close_iter(chunks)
            await self._finish(call, reply, pump, outcome)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return sink.done()
        except Exception as exc:  # a provider bug or a broken upstream stream
            log.error("stream failed: %s: %s", type(exc).__name__, exc, extra={"request_id": call.id})
            err = GatewayError("provider_error", "the upstream stream failed")
            outcome.ended, outcome.error, outcome.status = "upstream_error", err, 502
            await self._finish(call, reply, pump, outcome)
            await self._send_error_event(sink, err)
            return sink.done()
        await self._finish(call, reply, pump, outcome)
        try:
            await sink.write(_DONE)
            await sink.end()
        except ConnectionResetError:
            pass
        return sink.done()

    async def _finish(self, call: Call, reply: Reply, pump: StreamPump, outcome: Outcome) -> None:
        outcome.usage = pump.usage
        if outcome.usage is None and pump.chunks:  # billed even when cut off or reported without usage
            outcome.usage = self._estimate(call, pump.text())
        outcome.chunks = pump.chunks
        outcome.body = pump.body() if outcome.ended == "complete" else None
        outcome.cost_micros = self._cost(call, outcome.usage)
        await run_hooks_shielded(reply, outcome, self.final_hook, call)

    @staticmethod
    async def _close_iter(chunks: Any) -> None:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            try:
                await asyncio.shield(aclose())
            except (asyncio.CancelledError, Exception):
                pass

    @staticmethod
    async def _send_error_event(sink: Sink, err: GatewayError) -> None:
        try:
            await sink.write(b"data: " + orjson.dumps(err.body()) + b"\n\n")
            await sink.end()
        except (ConnectionResetError, RuntimeError):
            pass
