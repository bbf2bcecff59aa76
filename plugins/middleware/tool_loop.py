"""The ``tool_loop`` middleware: run the gateway's own tools for a model, round after round.

For an alias with ``tools:`` it offers those tools to the model next to the client's
own, and while the model answers with calls to gateway tools it runs them (in
parallel, arguments checked against each tool's schema, each under its timeout) and
asks again with the results appended, up to ``max_tool_rounds`` rounds. Then:

* an answer with no gateway calls is final and goes to the client;
* calls to the client's own tools go back to the client as usual; in a round that
  mixes both kinds only the client's calls are returned (the model can ask for the
  gateway tool again once it has the client's results) so the client's
  conversation stays consistent;
* when the limit is reached the model is asked once more with ``tool_choice: none``,
  so it must answer in text.

A tool failure (bad JSON, schema violation, timeout, exception) becomes a ``tool``
message ``{"error": ...}`` for the model, never an HTTP error. Usage is summed over
all rounds (so cost, budget and quota see every round); ``call.facts.tool_rounds``
counts the rounds that ran tools and ``call.facts.extra["tool_calls"]`` records each
call (round, name, ok, ms).

Streaming clients get every round live: each round is requested as a stream, its
text reaches the client as it arrives, gateway tool-call deltas are kept back and
run, and the next round continues the same client stream; a round's
``finish_reason`` is held until the round turns out to be the last, and one usage
chunk with the summed usage ends the stream. JSON clients get rounds non-streamed.
Place this layer directly before ``router``: layers outside it (budget, cache,
metrics, usage) see one request with the summed usage.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.call import Call, Endpoint, Usage
from gateway.chunks import ChunkAccumulator
from gateway.errors import GatewayError
from gateway.pipeline import Handler
from gateway.plugin import Services, Tool
from gateway.reply import Outcome, Reply
from plugins.tools.schema_check import check_arguments

__all__ = ["ToolLoop", "ToolLoopConfig", "run_tool_call"]


@dataclass(frozen=True, kw_only=True)
class ToolLoopConfig:
    max_parallel: int = field(default=8, metadata={"help": "tool calls run at once within one round"})
    max_result_chars: int = field(default=16000, metadata={"help": "a tool result longer than this is cut"})


def _schema(tool: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}


def _client_tool_names(body: dict[str, Any]) -> set[str]:
    names = set()
    for t in body.get("tools") or ():
        if isinstance(t, dict):
            fn = t.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
    return names


async def run_tool_call(tool: Tool, tool_call: dict[str, Any], call: Call, max_chars: int = 16000) -> tuple[str, bool]:
    """Run one call; return (content for the ``tool`` message, ok). Never raises."""
    raw = (tool_call.get("function") or {}).get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError as exc:
        return _error(f"arguments are not valid JSON: {exc}"), False
    if not isinstance(arguments, dict):
        return _error("arguments must be a JSON object"), False
    problems = check_arguments(tool.parameters, arguments)
    if problems:
        return _error("invalid arguments: " + "; ".join(problems[:5])), False
    try:
        result = await asyncio.wait_for(tool(arguments, call), timeout=float(getattr(tool, "timeout", 10.0) or 10.0))
    except asyncio.TimeoutError:
        return _error(f"tool {tool.name} timed out"), False
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any tool bug is the model's problem to read, not a 500
        return _error(f"{type(exc).__name__}: {exc}"[:500]), False
    text = result if isinstance(result, str) else orjson.dumps(result, default=str).decode()
    if len(text) > max_chars:
        text = text[:max_chars] + "…[truncated]"
    return text, True


def _error(message: str) -> str:
    return orjson.dumps({"error": message}).decode()


def _add_usage(total: dict[str, int], usage: dict[str, Any] | None) -> None:
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[k] = total.get(k, 0) + int((usage or {}).get(k) or 0)


def _round_body(original: dict[str, Any], messages: list[Any], offered: list[Any], tool_choice: Any,
                final_forced: bool, *, stream: bool) -> dict[str, Any]:
    body = {k: v for k, v in original.items() if k not in ("stream", "stream_options")}
    body["messages"] = messages
    body["tools"] = offered  # kept in the last round too: some APIs refuse tool messages without tools
    if final_forced:
        body["tool_choice"] = "none"  # the limit is reached: the model must answer in text
    elif tool_choice is not None:
        body["tool_choice"] = tool_choice
    if stream:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    return body


def _split_calls(completion: dict[str, Any], tools: dict[str, Tool]) -> tuple[dict[str, Any], dict[str, Any], list, list]:
    """(choice, message, gateway calls, client calls) of a round's completion."""
    choice = (completion.get("choices") or [{}])[0]
    message = dict(choice.get("message") or {})
    calls = [tc for tc in message.get("tool_calls") or () if isinstance(tc, dict)]
    ours = [tc for tc in calls if (tc.get("function") or {}).get("name") in tools]
    return choice, message, ours, [tc for tc in calls if tc not in ours]


class _ClientView:
    """Per round of a live stream: what of each upstream chunk the client may see.

    Text passes at once; deltas of gateway tool calls are kept back; client tool calls pass
    with their index renumbered; finish and usage chunks are held for the end of the round.
    """

    def __init__(self, tools: dict[str, Tool], cid: str | None) -> None:
        self.tools, self.cid = tools, cid
        self.kind: dict[int, bool] = {}  # upstream tool-call index -> is a gateway call
        self.client_index: dict[int, int] = {}
        self.finish: dict[str, Any] | None = None

    def __call__(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if self.cid is None:
            self.cid = chunk.get("id")
        choices = []
        for ch in chunk.get("choices") or ():
            delta = dict(ch.get("delta") or {})
            passed = []
            for tc in delta.get("tool_calls") or ():
                idx = tc.get("index", 0)
                if idx not in self.kind:
                    self.kind[idx] = ((tc.get("function") or {}).get("name") in self.tools)
                if not self.kind[idx]:
                    passed.append({**tc, "index": self.client_index.setdefault(idx, len(self.client_index))})
            if "tool_calls" in delta:
                delta["tool_calls"] = passed or None
                if not passed:
                    delta.pop("tool_calls")
            if ch.get("finish_reason"):
                self.finish = {**chunk, "id": self.cid, "choices": [{**ch, "delta": {}}]}
            if delta:
                choices.append({**ch, "delta": delta, "finish_reason": None})
        if not choices:
            return None
        return {**chunk, "id": self.cid, "choices": choices}


def _written(reply: Reply, chunk: dict[str, Any], acc: ChunkAccumulator, outcome: Outcome) -> dict[str, Any] | None:
    """One chunk of a round as the writer would write it: through the inner layers' transforms
    (None: held back), shown to their observers, and counted into ``acc`` and ``outcome``."""
    for t in reply.transforms:
        chunk = t(chunk)  # type: ignore[assignment]
        if chunk is None:
            return None
    for o in reply.observers:
        o(chunk)
    acc.add(chunk)
    outcome.chunks += 1
    return chunk


def _streamed(acc: ChunkAccumulator, outcome: Outcome) -> dict[str, Any] | None:
    """The completion a round's stream assembled (None unless it completed), recorded in ``outcome``."""
    body = acc.completion() if outcome.ended == "complete" else None
    outcome.body, outcome.usage = body, Usage.from_openai((body or {}).get("usage"))
    return body


async def _settle(reply: Reply) -> dict[str, Any] | None:
    """The completion of an intermediate round, running the inner layers' hooks as the writer would."""
    body: dict[str, Any] | None
    if reply.chunks is not None:
        acc = ChunkAccumulator()
        outcome = Outcome(status=200, ended="complete")
        try:
            async for chunk in reply.chunks:
                _written(reply, chunk, acc, outcome)
        except GatewayError as err:
            outcome.ended, outcome.status, outcome.error = "upstream_error", err.status, err
        body = _streamed(acc, outcome)
    else:
        ok = reply.status < 400
        body = reply.body if ok else None
        outcome = Outcome(status=reply.status, ended="complete" if ok else "error", error=reply.error, body=body,
                          usage=Usage.from_openai((body or {}).get("usage")))
    await _run_hooks(reply, outcome)
    if outcome.error is not None:
        raise outcome.error
    return body


class ToolLoop:
    Config = ToolLoopConfig

    def __init__(self, config: ToolLoopConfig, services: Services) -> None:
        self.cfg = config
        self.services = services

    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        mc = self.services.config.models.get(call.model) if call.endpoint == Endpoint.CHAT else None
        if mc is None or not mc.tools or call.body.get("tool_choice") == "none":
            return await call_next(call)
        client_names = _client_tool_names(call.body)
        # a client tool with the same name wins: the gateway never hijacks a client's function
        tools = {n: self.services.tools[n] for n in mc.tools if n in self.services.tools and n not in client_names}
        if not tools:
            return await call_next(call)

        want_stream = call.stream
        original = call.body
        st = _LoopState(
            messages=list(original.get("messages") or []),
            offered=[*(original.get("tools") or []), *(_schema(t) for t in tools.values())],
            tool_choice=original.get("tool_choice"),
            records=call.facts.extra.setdefault("tool_calls", []),
            sem=asyncio.Semaphore(max(1, self.cfg.max_parallel)),
        )
        if want_stream:
            first = await self._ask(call, call_next, original, st, 0, mc.max_tool_rounds, stream=True)
            if first.status >= 400 or first.chunks is None:
                return first
            live = self._live(call, call_next, original, st, tools, mc.max_tool_rounds, first)
            return Reply.stream(live, headers={**first.headers, "x-watchllm-tool-rounds": "live"})

        for round_no in range(mc.max_tool_rounds + 1):
            final_forced = round_no == mc.max_tool_rounds
            reply = await self._ask(call, call_next, original, st, round_no, mc.max_tool_rounds, stream=False)
            if reply.status >= 400:
                return reply
            last_headers = reply.headers
            completion = await _settle(reply)
            if completion is None:
                raise GatewayError("provider_error", "the model returned no completion")
            _add_usage(st.totals, completion.get("usage"))
            choice, message, ours, theirs = _split_calls(completion, tools)
            if not ours or final_forced:
                if ours:  # the model ignored tool_choice=none: never hand a client calls it cannot run
                    message["tool_calls"] = theirs or None
                    if not theirs:
                        message.pop("tool_calls")
                        choice = {**choice, "finish_reason": "stop"}
                    completion["choices"] = [{**choice, "message": message}]
                return self._final(call, completion, st.totals, last_headers)
            if theirs:  # mixed round: hand back the client's calls only
                message["tool_calls"] = theirs
                completion["choices"] = [{**choice, "message": message, "finish_reason": "tool_calls"}]
                return self._final(call, completion, st.totals, last_headers)
            await self._run_round(call, st, tools, message, ours, round_no)
        raise AssertionError("unreachable: the last round always returns")  # pragma: no cover

    async def _ask(self, call: Call, call_next: Handler, original: dict[str, Any], st: "_LoopState", round_no: int,
                   max_rounds: int, *, stream: bool) -> Reply:
        call.body = _round_body(original, st.messages, st.offered, st.tool_choice, round_no == max_rounds, stream=stream)
        try:
            return await call_next(call)
        finally:
            call.body = original

    async def _run_round(self, call: Call, st: "_LoopState", tools: dict[str, Tool], message: dict[str, Any],
                         ours: list[dict[str, Any]], round_no: int) -> None:
        """Run a round's gateway calls (in parallel) and append the assistant turn and the results."""
        call.facts.tool_rounds += 1
        if isinstance(st.tool_choice, dict) and (st.tool_choice.get("function") or {}).get("name") in tools:
            st.tool_choice = "auto"  # a forced gateway tool is forced once, or the loop never ends

        async def run(tc: dict[str, Any]) -> str:
            async with st.sem:
                started = time.perf_counter()
                name = tc["function"]["name"]
                content, ok = await run_tool_call(tools[name], tc, call, self.cfg.max_result_chars)
                st.records.append({"round": round_no + 1, "name": name, "ok": ok, "ms": round((time.perf_counter() - started) * 1000, 2)})
                return content

        results = await asyncio.gather(*(run(tc) for tc in ours))
        st.messages = [*st.messages, {"role": "assistant", "content": message.get("content"), "tool_calls": ours}]
        st.messages += [{"role": "tool", "tool_call_id": tc.get("id"), "content": r} for tc, r in zip(ours, results)]

    async def _live(self, call: Call, call_next: Handler, original: dict[str, Any], st: "_LoopState",
                    tools: dict[str, Tool], max_rounds: int, reply: Reply) -> Any:
        """Rounds for a streaming client: text reaches it as it arrives, across rounds."""
        cid: str | None = None
        for round_no in range(max_rounds + 1):
            if round_no:
                reply = await self._ask(call, call_next, original, st, round_no, max_rounds, stream=True)
                if reply.status >= 400 or reply.chunks is None:
                    raise reply.error or GatewayError("provider_error", "the model returned no stream")
            view = _ClientView(tools, cid)
            acc = ChunkAccumulator()
            outcome = Outcome(status=200, ended="complete")
            try:
                async for chunk in reply.chunks:  # type: ignore[union-attr]
                    written = _written(reply, chunk, acc, outcome)
                    out = view(written) if written is not None else None
                    if out is not None:
                        yield out
            except GatewayError as err:
                outcome.ended, outcome.status, outcome.error = "upstream_error", err.status, err
            except BaseException:
                outcome.ended, outcome.status = "client_gone", 499
                await _run_hooks(reply, outcome)
                raise
            completion = _streamed(acc, outcome)
            await _run_hooks(reply, outcome)
            if outcome.error is not None:
                raise outcome.error
            cid = view.cid
            _add_usage(st.totals, (completion or {}).get("usage"))
            choice, message, ours, theirs = _split_calls(completion or {}, tools)
            if ours and theirs:
                # mixed round: the client's calls went out; hand them back, run nothing (as for JSON)
                ours = []
            if not ours or round_no == max_rounds:
                finish = view.finish or {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                                         "model": (completion or {}).get("model", ""), "choices": [{"index": 0, "delta": {}}]}
                reason = "tool_calls" if theirs else (choice.get("finish_reason") if not ours else "stop") or "stop"
                yield {**finish, "choices": [{**finish["choices"][0], "finish_reason": reason}]}
                yield {"id": cid, "object": "chat.completion.chunk", "created": finish.get("created", int(time.time())),
                       "model": finish.get("model", ""), "choices": [], "usage": dict(st.totals)}
                return
            await self._run_round(call, st, tools, message, ours, round_no)

    def _final(self, call: Call, completion: dict[str, Any], totals: dict[str, int], headers: dict[str, str]) -> Reply:
        completion["usage"] = {**(completion.get("usage") or {}), **totals}
        headers = {**headers, "x-watchllm-tool-rounds": str(call.facts.tool_rounds)}
        return Reply.json(completion, headers=headers)


@dataclass
class _LoopState:
    messages: list[Any]
    offered: list[Any]
    tool_choice: Any
    records: list[dict[str, Any]]
    sem: asyncio.Semaphore
    totals: dict[str, int] = field(default_factory=dict)


async def _run_hooks(reply: Reply, outcome: Outcome) -> None:
    for hook in reply.hooks:
        await asyncio.shield(hook(outcome))
