"""Test kit for plugin authors: test one middleware alone, as the server would run it.

    call = make_call({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    nxt = ScriptedNext(json={"choices": [...]})            # or stream=[chunk, ...], or error=GatewayError(...)
    reply = await MyMiddleware(MyMiddleware.Config(), make_services())(call, nxt)
    result = await drive(reply, call)                      # applies transforms, observers, hooks
    assert nxt.calls[0].body["messages"][0]["content"] == "hi"
    assert result.outcome.ok and result.text == "..."

``drive`` uses the same ``StreamPump`` as the HTTP writer, runs the completion hooks
exactly once, and can simulate a client that disconnects after N chunks.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

from .call import Call, Endpoint, Usage
from .chunks import completion_to_chunks, new_id
from .config import parse_config
from .errors import GatewayError
from .plugin import Services
from .pricing import Pricing
from .reply import Outcome, Reply
from .streaming import StreamPump

__all__ = ["make_call", "make_services", "ScriptedNext", "drive", "Driven", "completion"]


def make_call(body: dict[str, Any], *, endpoint: str = Endpoint.CHAT, headers: dict[str, str] | None = None, **kw: Any) -> Call:
    opts = body.get("stream_options")
    return Call(
        id=uuid.uuid4().hex, endpoint=endpoint, body=body, headers=headers or {},
        client_include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")), **kw,
    )


def make_services(config: dict[str, Any] | None = None, **kw: Any) -> Services:
    cfg = parse_config(config or {"providers": {"mock": {"type": "mock"}}, "models": {"mock": {"targets": ["mock/mock-1"]}}}, "<test>")
    return Services(config=cfg, log=logging.getLogger("watchllm.test"), pricing=kw.pop("pricing", Pricing()), **kw)


def completion(text: str, *, model: str = "mock-1", prompt_tokens: int = 5, completion_tokens: int = 3) -> dict[str, Any]:
    return {
        "id": new_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


class ScriptedNext:
    """A ``call_next`` that records the calls it gets and answers from a script."""

    def __init__(self, *, json: dict[str, Any] | None = None, stream: Iterable[dict[str, Any]] | None = None,
                 error: GatewayError | None = None, text: str | None = None) -> None:
        if text is not None:
            json = completion(text)
        self.json, self.stream_chunks, self.error = json, list(stream) if stream is not None else None, error
        self.calls: list[Call] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, call: Call) -> Reply:
        self.calls.append(call)
        self.bodies.append(_deepcopy(call.body))
        if self.error is not None:
            raise self.error
        if self.stream_chunks is not None or call.stream:
            chunks = self.stream_chunks if self.stream_chunks is not None else completion_to_chunks(self.json or completion("ok"))
            return Reply.stream(_aiter(chunks))
        return Reply.json(_deepcopy(self.json or completion("ok")))


async def _aiter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield _deepcopy(item)


def _deepcopy(obj: Any) -> Any:
    import copy

    return copy.deepcopy(obj)


@dataclass
class Driven:
    reply: Reply
    outcome: Outcome
    chunks: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if self.body is not None and not self.chunks:
            ch = (self.body.get("choices") or [{}])[0]
            return (ch.get("message") or {}).get("content") or ch.get("text") or ""
        return "".join((c.get("delta") or {}).get("content") or "" for chunk in self.chunks for c in chunk.get("choices") or ())


async def drive(reply: Reply, call: Call | None = None, *, disconnect_after: int | None = None) -> Driven:
    """Consume a reply like the HTTP writer: returns what the client would get and the outcome."""
    if reply.chunks is None:
        ok = reply.status < 400
        body = reply.body or {}
        outcome = Outcome(status=reply.status, ended="complete" if ok else "error",
                          usage=Usage.from_openai(body.get("usage")) if ok else None, error=reply.error, body=body if ok else None)
        for hook in reply.hooks:
            await hook(outcome)
        return Driven(reply, outcome, body=reply.body)
    pump = StreamPump(reply, client_include_usage=call.client_include_usage if call else True)
    sent: list[dict[str, Any]] = []
    outcome = Outcome(status=200, ended="complete")
    try:
        async for chunk in reply.chunks:
            out = pump.process(chunk)
            if out is not None:
                sent.append(out)
                if disconnect_after is not None and len(sent) >= disconnect_after:
                    outcome.ended, outcome.status = "client_gone", 499
                    await reply.chunks.aclose()  # type: ignore[attr-defined]
                    break
    except GatewayError as err:
        outcome.ended, outcome.error, outcome.status = "upstream_error", err, err.status
    outcome.usage, outcome.chunks = pump.usage, pump.chunks
    outcome.body = pump.body() if outcome.ended == "complete" else None
    for hook in reply.hooks:
        await hook(outcome)
    return Driven(reply, outcome, chunks=sent, body=outcome.body)
